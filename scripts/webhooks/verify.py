"""Verify webhooks with the Standard Webhooks reference library.

Reads a JSON list of {"headers": {...}, "body": "..."} on stdin, verifies
each with Webhook(secret).verify, and prints the verified payloads as a JSON
list. Exits 1, naming the webhook, on the first one that fails.

    verify.py SECRET < hooks.json
"""

import json
import sys

from standardwebhooks import Webhook


def main() -> int:
    webhook = Webhook(sys.argv[1])
    verified = []
    for i, hook in enumerate(json.load(sys.stdin)):
        try:
            verified.append(webhook.verify(hook["body"], hook["headers"]))
        except Exception as e:  # the library raises its own WebhookVerificationError
            print(f"webhook {i} ({hook['headers'].get('webhook-id')}): {e}", file=sys.stderr)
            return 1
    json.dump(verified, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
