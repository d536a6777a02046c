//! The IMDSv2 client against a small server that speaks the protocol: a
//! token from PUT (with its TTL header), GETs refused without it.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, put};
use nommer_fleet::imds::Imds;
use std::sync::{Arc, Mutex};

#[derive(Clone, Default)]
struct Metadata {
    spot: Arc<Mutex<Option<String>>>,
    tokens_issued: Arc<Mutex<u32>>,
}

async fn token(State(m): State<Metadata>, headers: HeaderMap) -> (StatusCode, String) {
    if !headers.contains_key("x-aws-ec2-metadata-token-ttl-seconds") {
        return (StatusCode::BAD_REQUEST, String::new());
    }
    *m.tokens_issued.lock().unwrap() += 1;
    (StatusCode::OK, "TOKEN-1".into())
}

fn authorized(headers: &HeaderMap) -> bool {
    headers
        .get("x-aws-ec2-metadata-token")
        .is_some_and(|t| t == "TOKEN-1")
}

async fn server() -> (String, Metadata) {
    let metadata = Metadata::default();
    let app = axum::Router::new()
        .route("/latest/api/token", put(token))
        .route(
            "/latest/meta-data/instance-id",
            get(|headers: HeaderMap| async move {
                if !authorized(&headers) {
                    return (StatusCode::UNAUTHORIZED, String::new());
                }
                (StatusCode::OK, "i-0123456789abcdef0".into())
            }),
        )
        .route(
            "/latest/meta-data/spot/instance-action",
            get(|State(m): State<Metadata>, headers: HeaderMap| async move {
                if !authorized(&headers) {
                    return (StatusCode::UNAUTHORIZED, String::new());
                }
                match m.spot.lock().unwrap().clone() {
                    Some(notice) => (StatusCode::OK, notice),
                    None => (StatusCode::NOT_FOUND, String::new()),
                }
            }),
        )
        .with_state(metadata.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, metadata)
}

#[tokio::test]
async fn instance_id_and_spot_notice_through_a_session_token() {
    let (url, metadata) = server().await;
    let imds = Imds::new(&url);
    assert_eq!(imds.instance_id().await.unwrap(), "i-0123456789abcdef0");
    assert_eq!(imds.spot_interruption().await.unwrap(), None);
    *metadata.spot.lock().unwrap() =
        Some(r#"{"action": "terminate", "time": "2026-11-27T23:59:00Z"}"#.into());
    let notice = imds.spot_interruption().await.unwrap().unwrap();
    assert!(notice.contains("terminate"));
    assert_eq!(
        *metadata.tokens_issued.lock().unwrap(),
        1,
        "the token is reused"
    );
    assert_eq!(imds.get("no/such/path").await.unwrap(), None);
}
