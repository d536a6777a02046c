"""Azurite fixtures for the tests, through Microsoft's own SDK
(azure-storage-blob, installed by scripts/install-deps.sh --test):

  blob.py CONN container NAME          make a container (if missing)
  blob.py CONN put CONTAINER BLOB FILE upload a file
  blob.py CONN get CONTAINER BLOB FILE download a blob (exit 3: missing)
  blob.py CONN sas CONTAINER           print a container SAS (read, write,
                                       create, delete, list; one hour)

CONN is an Azure Storage connection string.
"""

import datetime
import sys

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobServiceClient, ContainerSasPermissions, generate_container_sas


def main(conn, command, *args):
    service = BlobServiceClient.from_connection_string(conn)
    if command == "container":
        try:
            service.create_container(args[0])
        except ResourceExistsError:
            pass
    elif command == "put":
        container, blob, path = args
        with open(path, "rb") as f:
            service.get_blob_client(container, blob).upload_blob(f, overwrite=True, max_concurrency=2)
    elif command == "get":
        container, blob, path = args
        try:
            data = service.get_blob_client(container, blob).download_blob()
        except ResourceNotFoundError:
            sys.exit(3)
        with open(path, "wb") as f:
            data.readinto(f)
    elif command == "sas":
        (container,) = args
        print(
            generate_container_sas(
                service.account_name,
                container,
                account_key=service.credential.account_key,
                permission=ContainerSasPermissions(read=True, write=True, create=True, delete=True, list=True),
                expiry=datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1),
            )
        )
    else:
        sys.exit(f"unknown command {command}")


if __name__ == "__main__":
    main(*sys.argv[1:])
