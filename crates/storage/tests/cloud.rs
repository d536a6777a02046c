//! GCS and Azure through object_store, against small HTTP stand-ins on
//! loopback that answer as the services do (unsigned requests, as to a public
//! bucket or an emulator): the URL each backend builds, ranged reads, and a
//! missing object.

use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::IntoResponse;
use futures::StreamExt;
use nommer_model::uri::MediaUri;
use nommer_storage::object::config::{AzureConfig, GcsConfig};
use nommer_storage::{FileRoots, ObjectConfig, Storage};
use std::sync::{Arc, Mutex};

const BODY: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";

/// Serves BODY at any path ending in `/clip.mp4` (honouring a Range header)
/// and 404 elsewhere; records every request path, decoded.
async fn stand_in() -> (String, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap| {
        let log = log.clone();
        async move {
            // GCS escapes '/' and '.' inside object names; the services decode.
            let path = percent_encoding::percent_decode_str(uri.path())
                .decode_utf8_lossy()
                .to_string();
            log.lock().unwrap().push(path.clone());
            if !path.ends_with("/clip.mp4") {
                return (StatusCode::NOT_FOUND, "not found").into_response();
            }
            let start = headers
                .get("range")
                .and_then(|r| r.to_str().ok())
                .and_then(|r| r.strip_prefix("bytes="))
                .and_then(|r| r.split('-').next())
                .and_then(|s| s.parse::<usize>().ok());
            let meta = [
                ("etag", "\"abc\"".to_string()),
                ("last-modified", "Wed, 21 Oct 2026 07:28:00 GMT".to_string()),
                ("content-type", "video/mp4".to_string()),
            ];
            match start {
                Some(start) => (
                    StatusCode::PARTIAL_CONTENT,
                    [(
                        "content-range",
                        format!("bytes {start}-{}/{}", BODY.len() - 1, BODY.len()),
                    )],
                    meta,
                    BODY[start..].to_vec(),
                )
                    .into_response(),
                None => (StatusCode::OK, meta, BODY.to_vec()).into_response(),
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

fn storage(objects: ObjectConfig) -> Storage {
    Storage::new(FileRoots::Any, Default::default(), objects)
}

async fn read_all(storage: &Storage, uri: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("out");
    let uri = MediaUri::parse(uri).unwrap();
    if let Err(e) = storage.download(&uri, &dest, Arc::new(|_, _| {})).await {
        panic!("{e}");
    }
    std::fs::read(dest).unwrap()
}

#[tokio::test]
async fn gcs_reads_and_misses_through_object_store() {
    let (url, seen) = stand_in().await;
    let storage = storage(ObjectConfig {
        gcs: GcsConfig {
            endpoint: Some(url),
            allow_http: true,
            anonymous: true,
            ..Default::default()
        },
        ..Default::default()
    });
    assert_eq!(read_all(&storage, "gs://media/in/clip.mp4").await, BODY);
    assert!(seen
        .lock()
        .unwrap()
        .iter()
        .any(|p| p == "/media/in/clip.mp4"));
    let missing = MediaUri::parse("gs://media/in/none.mp4").unwrap();
    assert_eq!(storage.object_exists(&missing).await.unwrap(), Some(false));
    let err = storage
        .download(
            &missing,
            &std::env::temp_dir().join("x"),
            Arc::new(|_, _| {}),
        )
        .await
        .unwrap_err();
    assert!(
        err.message
            .starts_with("The specified input file cannot be found: gs://media/in/none.mp4"),
        "{}",
        err.message
    );
}

#[tokio::test]
async fn azure_reads_ranges_through_object_store() {
    let (url, seen) = stand_in().await;
    let storage = storage(ObjectConfig {
        azure: AzureConfig {
            account: Some("devstoreaccount1".into()),
            endpoint: Some(url),
            allow_http: true,
            anonymous: true,
            ..Default::default()
        },
        ..Default::default()
    });
    assert_eq!(read_all(&storage, "az://videos/clip.mp4").await, BODY);
    assert!(
        seen.lock()
            .unwrap()
            .iter()
            .any(|p| p.ends_with("/videos/clip.mp4")),
        "{:?}",
        seen.lock().unwrap()
    );
    // A resumed read asks for the rest only.
    let opened = nommer_storage::object::ObjectStorage::new(storage.objects().clone())
        .open(&MediaUri::parse("az://videos/clip.mp4").unwrap(), 10)
        .await
        .unwrap();
    assert_eq!(opened.total, Some(BODY.len() as u64));
    let rest: Vec<u8> = opened.stream.map(|c| c.unwrap().to_vec()).concat().await;
    assert_eq!(rest, &BODY[10..]);
}
