//! The dashboard's session: the API token a person signed in with, kept in
//! an HttpOnly, SameSite=Strict cookie, and the CSRF token every
//! state-changing request from the page carries. The CSRF token is an HMAC
//! of the API token, so any replica checks it without shared state, and a
//! page of another site, which cannot read the cookie, cannot make it.

use axum::http::HeaderMap;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const COOKIE: &str = "nommer_session";
/// Its name over https: a `__Host-` cookie cannot be set by a subdomain.
pub const HOST_COOKIE: &str = "__Host-nommer_session";
/// The header a signed-in page sends its CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The API token in the request's session cookie, if it has exactly one:
/// two (one planted beside it by another host of the domain) are refused.
pub fn token(headers: &HeaderMap) -> Option<String> {
    let mut found = Vec::new();
    for value in headers.get_all(axum::http::header::COOKIE) {
        let Ok(text) = value.to_str() else { continue };
        for pair in text.split(';') {
            let Some((name, encoded)) = pair.trim().split_once('=') else {
                continue;
            };
            if name == COOKIE || name == HOST_COOKIE {
                found.push(encoded.to_string());
            }
        }
    }
    let [encoded] = found.as_slice() else {
        return None;
    };
    String::from_utf8(B64.decode(encoded).ok()?).ok()
}

/// The CSRF token of a session on `token`.
pub fn csrf(token: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(token.as_bytes()).expect("HMAC takes any key");
    mac.update(b"media-nommer dashboard csrf");
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The `Set-Cookie` value that starts a session; `Secure` when the page
/// came over https (as a TLS-terminating proxy says).
pub fn set_cookie(token: &str, headers: &HeaderMap) -> String {
    let encoded = B64.encode(token.as_bytes());
    match https(headers) {
        true => format!("{HOST_COOKIE}={encoded}; Path=/; HttpOnly; SameSite=Strict; Secure"),
        false => format!("{COOKIE}={encoded}; Path=/; HttpOnly; SameSite=Strict"),
    }
}

fn https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .is_some_and(|p| p.as_bytes().eq_ignore_ascii_case(b"https"))
}

/// The `Set-Cookie` value that ends one.
pub fn clear_cookie(headers: &HeaderMap) -> String {
    match https(headers) {
        true => format!("{HOST_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Secure; Max-Age=0"),
        false => format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_cookie_reads_back_and_its_csrf_token_is_the_tokens_own() {
        let mut headers = HeaderMap::new();
        let cookie = set_cookie("s3cret; with=odd chars", &headers);
        assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
        assert!(!cookie.contains("Secure"));
        let value = cookie.split(';').next().unwrap();
        headers.insert(
            axum::http::header::COOKIE,
            format!("other=1; {value}").parse().unwrap(),
        );
        assert_eq!(token(&headers).as_deref(), Some("s3cret; with=odd chars"));
        let mut twice = headers.clone();
        twice.append(
            axum::http::header::COOKIE,
            format!("{COOKIE}=dGhlaXJz").parse().unwrap(),
        );
        assert_eq!(token(&twice), None, "a second session cookie is refused");
        assert_eq!(csrf("a"), csrf("a"));
        assert_ne!(csrf("a"), csrf("b"));
        headers.insert("x-forwarded-proto", "https".parse().unwrap());
        let secure = set_cookie("t", &headers);
        assert!(secure.starts_with("__Host-") && secure.ends_with("; Secure"));
    }
}
