//! Media URIs: the one place they are parsed and redacted.
//!
//! Forms (the seed's, SPEC §5, parsed per RFC 3986 with percent-escapes decoded
//! in paths and object keys):
//! - `file:///abs/path` or `file://localhost/abs/path`
//! - `http://host[:port]/path?query`, `https://...`
//! - `s3://bucket/key`, `gs://bucket/object`, `az://container/blob`
//! - the seed's `s3://ACCESS:SECRET@bucket/key`: the userinfo ends at the
//!   first `@` (SPEC §5.1), so an `@` in the secret is written `%40` (and a
//!   `%` as `%25`); `/`, `+` and `:` may appear as they are. Both parts are
//!   percent-decoded.
//!
//! [`split_seed_credentials`] is the one reading of those credentials, and
//! redaction goes through it (or, for http(s), through the same parsed URL),
//! so what is hidden is exactly what was read as a secret. Text that does not
//! parse is shown as its scheme alone.

use crate::error::{CodedError, ErrorCode};
use percent_encoding::percent_decode_str;
use std::fmt;
use std::path::PathBuf;

/// How a scheme's URIs are written, and so how they are parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Form {
    /// `scheme:///abs/path`
    File,
    /// A URL: `scheme://host[:port]/path?query`
    Http,
    /// `scheme://bucket/key`, or the seed's `scheme://KEY:SECRET@bucket/key`
    Object,
}

/// A URI scheme: its name and the form of its URIs. The storage registry
/// (`nommer_storage::registry`) serves each scheme with one backend; the
/// schemes it serves are the ones URIs parse with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Scheme {
    name: &'static str,
    form: Form,
}

/// Schemes registered beyond [`Scheme::BUILTIN`] (a registry's own).
static REGISTERED: std::sync::RwLock<Vec<Scheme>> = std::sync::RwLock::new(Vec::new());

impl Scheme {
    pub const FILE: Scheme = Scheme::new("file", Form::File);
    pub const HTTP: Scheme = Scheme::new("http", Form::Http);
    pub const HTTPS: Scheme = Scheme::new("https", Form::Http);
    pub const S3: Scheme = Scheme::new("s3", Form::Object);
    pub const GS: Scheme = Scheme::new("gs", Form::Object);
    pub const AZ: Scheme = Scheme::new("az", Form::Object);
    /// The schemes of the builtin storage registry. They are known to every
    /// crate, those that link no storage (the store, this model) included.
    pub const BUILTIN: [Scheme; 6] = [
        Scheme::FILE,
        Scheme::HTTP,
        Scheme::HTTPS,
        Scheme::S3,
        Scheme::GS,
        Scheme::AZ,
    ];

    pub const fn new(name: &'static str, form: Form) -> Scheme {
        Scheme { name, form }
    }

    pub fn as_str(self) -> &'static str {
        self.name
    }

    pub fn form(self) -> Form {
        self.form
    }

    /// Make `scheme` parse from now on (a registry adding a backend). A name
    /// already known with another form is refused.
    pub fn register(scheme: Scheme) -> Result<(), String> {
        // Looked up and added under one lock: two registrations cannot race.
        let mut registered = REGISTERED.write().unwrap_or_else(|e| e.into_inner());
        let known = Scheme::BUILTIN
            .iter()
            .chain(registered.iter())
            .find(|s| s.name == scheme.name);
        match known {
            Some(known) if *known == scheme => return Ok(()),
            Some(known) => {
                return Err(format!(
                    "the scheme {} is already registered as {:?}",
                    known.name, known.form
                ))
            }
            None => {}
        }
        let valid = !scheme.name.is_empty()
            && scheme.name.len() <= 32
            && scheme
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '+' | '-'));
        if !valid {
            return Err(format!("{:?} is not a scheme name", scheme.name));
        }
        registered.push(scheme);
        Ok(())
    }

    /// Every scheme that parses, builtin first.
    pub fn all() -> Vec<Scheme> {
        let registered = REGISTERED.read().unwrap_or_else(|e| e.into_inner());
        Scheme::BUILTIN
            .iter()
            .chain(registered.iter())
            .copied()
            .collect()
    }

    fn lookup(name: &str) -> Option<Scheme> {
        if let Some(builtin) = Scheme::BUILTIN.iter().find(|s| s.name == name) {
            return Some(*builtin);
        }
        let registered = REGISTERED.read().unwrap_or_else(|e| e.into_inner());
        registered.iter().find(|s| s.name == name).copied()
    }
}

/// Credentials embedded in an object-store URI. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_key: String,
    pub secret: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Credentials(REDACTED)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    File {
        path: PathBuf,
    },
    Http {
        url: url::Url,
    },
    Object {
        bucket: String,
        key: String,
        credentials: Option<Credentials>,
    },
}

/// A parsed media URI. `Display` and `redacted()` never show credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct MediaUri {
    raw: String,
    scheme: Scheme,
    location: Location,
}

impl fmt::Debug for MediaUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MediaUri({})", self.redacted())
    }
}

impl fmt::Display for MediaUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

fn malformed(uri: &str, why: &str) -> CodedError {
    CodedError::new(
        ErrorCode::UriMalformed,
        format!("Malformed URI \"{}\": {why}", redact_str(uri)),
    )
}

impl MediaUri {
    pub fn parse(raw: &str) -> Result<MediaUri, CodedError> {
        let Some((scheme_str, rest)) = raw.split_once("://") else {
            return Err(CodedError::new(
                ErrorCode::UriMalformed,
                format!(
                    "No protocol specified. Pre-pend \"proto://\" to your current value of \"{}\", where \"proto\" is your choice of protocol.",
                    redact_str(raw)
                ),
            ));
        };
        let Some(scheme) = Scheme::lookup(scheme_str) else {
            let known: Vec<&str> = Scheme::all().iter().map(|s| s.as_str()).collect();
            return Err(CodedError::new(
                ErrorCode::UriUnknownScheme,
                format!(
                    "Unknown URI scheme \"{}\" in \"{}\"; known: {}",
                    scheme_str.chars().take(32).collect::<String>(),
                    redact_str(raw),
                    known.join(", ")
                ),
            ));
        };
        if raw.chars().any(|c| c.is_control()) {
            return Err(malformed(raw, "control characters are not allowed"));
        }
        let location = match scheme.form() {
            Form::File => parse_file(raw, rest)?,
            Form::Http => parse_http(raw)?,
            Form::Object => parse_object(raw, rest)?,
        };
        Ok(MediaUri {
            raw: raw.to_string(),
            scheme,
            location,
        })
    }

    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    pub fn location(&self) -> &Location {
        &self.location
    }

    /// The URI as given, credentials included. Only for the lease response and
    /// the worker's own storage calls.
    pub fn expose(&self) -> &str {
        &self.raw
    }

    pub fn has_credentials(&self) -> bool {
        match &self.location {
            Location::Object { credentials, .. } => credentials.is_some(),
            Location::Http { url } => url.password().is_some() || !url.username().is_empty(),
            Location::File { .. } => false,
        }
    }

    /// The URI with credentials (and http query strings, which carry presigned
    /// signatures) replaced by `REDACTED`.
    pub fn redacted(&self) -> String {
        match &self.location {
            Location::Object {
                credentials: Some(_),
                ..
            } => {
                let rest = self.raw.split_once("://").map(|(_, r)| r).unwrap_or("");
                let (_, after) = split_seed_credentials(rest);
                format!("{}://REDACTED@{after}", self.scheme.as_str())
            }
            Location::Object { .. } => self.raw.clone(),
            Location::Http { url } => redact_url(url),
            Location::File { .. } => self.raw.clone(),
        }
    }

    /// The last path segment's extension, lower-cased (`mp4` for `.../a.MP4`).
    pub fn extension(&self) -> Option<String> {
        let name = match &self.location {
            Location::File { path } => path.file_name()?.to_string_lossy().to_string(),
            Location::Http { url } => url.path_segments()?.next_back()?.to_string(),
            Location::Object { key, .. } => key.rsplit('/').next()?.to_string(),
        };
        let (_, ext) = name.rsplit_once('.')?;
        if ext.is_empty() || ext.len() > 8 || !ext.chars().all(|c| c.is_ascii_alphanumeric()) {
            return None;
        }
        Some(ext.to_ascii_lowercase())
    }
}

fn parse_file(raw: &str, rest: &str) -> Result<Location, CodedError> {
    let url = url::Url::parse(raw).map_err(|e| malformed(raw, &e.to_string()))?;
    match url.host_str() {
        None | Some("") | Some("localhost") => {}
        Some(_) => return Err(malformed(
            raw,
            "a file:// URI needs an absolute path: file:///abs/path or file://localhost/abs/path",
        )),
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(malformed(raw, "a file:// URI takes no query or fragment"));
    }
    let decoded = file_path(raw, rest)?;
    if !decoded.starts_with('/') || decoded.len() < 2 || decoded.ends_with('/') {
        return Err(malformed(
            raw,
            "a file:// URI must name an absolute file path",
        ));
    }
    Ok(Location::File {
        path: PathBuf::from(decoded),
    })
}

/// The path of a `file://` URI read from the raw text, segment by segment:
/// the URL parser would fold `..`, `%2e%2e` and `\\` away before anything
/// could see them. A segment that is `.` or `..` once decoded, or that holds
/// `/`, `\\` or NUL, is refused, so a checked path means what it says.
fn file_path(raw: &str, rest: &str) -> Result<String, CodedError> {
    let not_allowed = |why: &str| {
        CodedError::new(
            ErrorCode::UriNotAllowed,
            format!("file:// path in \"{}\" {why}", redact_str(raw)),
        )
    };
    let path = match rest.get(..9) {
        Some(host) if host.eq_ignore_ascii_case("localhost") => &rest[9..],
        _ => rest,
    };
    if path.contains('\\') {
        return Err(not_allowed("holds a backslash"));
    }
    let mut decoded = String::with_capacity(path.len());
    for segment in path.split('/').skip(1) {
        let segment = percent_decode_str(segment)
            .decode_utf8()
            .map_err(|_| malformed(raw, "the path is not valid UTF-8 once decoded"))?;
        if segment == "." || segment == ".." {
            return Err(not_allowed("holds a '.' or '..' segment"));
        }
        if segment.contains(['/', '\\', '\0']) {
            return Err(not_allowed("holds an encoded '/', a backslash or a NUL"));
        }
        decoded.push('/');
        decoded.push_str(&segment);
    }
    Ok(decoded)
}

fn parse_http(raw: &str) -> Result<Location, CodedError> {
    let url = url::Url::parse(raw).map_err(|e| malformed(raw, &e.to_string()))?;
    if url.host_str().unwrap_or("").is_empty() {
        return Err(malformed(raw, "no host"));
    }
    Ok(Location::Http { url })
}

fn parse_object(raw: &str, rest: &str) -> Result<Location, CodedError> {
    let (credentials, rest) = split_seed_credentials(rest);
    let Some((bucket, key)) = rest.split_once('/') else {
        return Err(malformed(raw, "expected scheme://bucket/key"));
    };
    let valid_bucket = !bucket.is_empty()
        && bucket.len() <= 255
        && bucket
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if !valid_bucket {
        return Err(malformed(
            raw,
            "the bucket name is empty or has invalid characters",
        ));
    }
    let key = percent_decode_str(key)
        .decode_utf8()
        .map_err(|_| malformed(raw, "the key is not valid UTF-8 once decoded"))?;
    if key.is_empty() || key.ends_with('/') {
        return Err(malformed(raw, "the object key is empty"));
    }
    Ok(Location::Object {
        bucket: bucket.to_string(),
        key: key.into_owned(),
        credentials,
    })
}

/// The seed's `ACCESS:SECRET@bucket/key`: credentials when the text before the
/// first `@` holds a `:` whose left side has no `/` (an access key never does;
/// a bucket/key path always does). Otherwise the `@` belongs to the key
/// (`s3://bucket/me@x.jpg`).
fn split_seed_credentials(rest: &str) -> (Option<Credentials>, &str) {
    let Some((auth, after)) = rest.split_once('@') else {
        return (None, rest);
    };
    let Some((access, secret)) = auth.split_once(':') else {
        return (None, rest);
    };
    if access.is_empty() || access.contains('/') || secret.is_empty() {
        return (None, rest);
    }
    let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
    let credentials = Credentials {
        access_key: decode(access),
        secret: decode(secret),
    };
    (Some(credentials), after)
}

fn redact_url(url: &url::Url) -> String {
    let mut shown = url.clone();
    if !shown.username().is_empty() || shown.password().is_some() {
        let _ = shown.set_username("REDACTED");
        let _ = shown.set_password(None);
    }
    if shown.query().is_some() {
        shown.set_query(Some("REDACTED"));
    }
    shown.to_string()
}

/// Redact text that may or may not parse as a URI (error messages, logs):
/// the redacted form of what parses, by the parser that reads it; the scheme
/// alone for what does not, since a refused URI's secret cannot be located.
/// Other schemes (a store's `postgres://user:pw@host/db`) are read as URLs.
pub fn redact_str(raw: &str) -> String {
    let Some((scheme, rest)) = raw.split_once("://") else {
        // No scheme: nothing says where a secret would end.
        return if raw.contains('@') {
            "REDACTED".to_string()
        } else {
            raw.to_string()
        };
    };
    let scheme_only = || {
        let scheme: String = scheme.chars().take(32).collect();
        format!("{scheme}://REDACTED")
    };
    match Scheme::lookup(scheme).map(Scheme::form) {
        // The bucket and key need not be valid to locate the secret, but a
        // second `@` means the secret held one unescaped: its end is unknown.
        Some(Form::Object) => match split_seed_credentials(rest) {
            (Some(_), after) if !after.contains('@') => format!("{scheme}://REDACTED@{after}"),
            (Some(_), _) => scheme_only(),
            // No credentials read, but text before an `@` that holds a `:`
            // (an empty access key, say) may still be one: show none of it.
            (None, _) => match rest.split_once('@') {
                Some((before, _)) if before.contains(':') => scheme_only(),
                _ => raw.to_string(),
            },
        },
        // A file URI has no userinfo unless its authority holds an `@`.
        Some(Form::File) if !rest.split('/').next().unwrap_or("").contains('@') => raw.to_string(),
        _ => match url::Url::parse(raw) {
            Ok(url) if url.has_host() => redact_url(&url),
            _ => scheme_only(),
        },
    }
}

/// How a notify_url is shown: scheme, userinfo redacted, host and port; the
/// path and query redacted too, since receivers keep secrets in either
/// (`/services/T0/B0/SECRET`, `?token=...`).
pub fn redact_notify_url(raw: &str) -> String {
    let Ok(url) = url::Url::parse(raw) else {
        return redact_str(raw);
    };
    let mut shown = format!("{}://", url.scheme());
    if !url.username().is_empty() || url.password().is_some() {
        shown.push_str("REDACTED@");
    }
    if let Some(host) = url.host() {
        shown.push_str(&host.to_string());
    }
    if let Some(port) = url.port() {
        shown.push_str(&format!(":{port}"));
    }
    shown.push('/');
    if url.path() != "/" {
        shown.push_str("REDACTED");
    }
    if url.query().is_some() {
        shown.push_str("?REDACTED");
    }
    shown
}

/// A notify_url: http(s) only.
pub fn parse_notify_url(raw: &str) -> Result<url::Url, CodedError> {
    let url = url::Url::parse(raw).map_err(|e| {
        CodedError::new(
            ErrorCode::UriMalformed,
            format!("Malformed notify_url \"{}\": {e}", redact_str(raw)),
        )
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(CodedError::new(
            ErrorCode::UriUnknownScheme,
            format!("notify_url must be http or https, not \"{}\"", url.scheme()),
        ));
    }
    if url.host_str().unwrap_or("").is_empty() {
        return Err(CodedError::new(
            ErrorCode::UriMalformed,
            "notify_url has no host".to_string(),
        ));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(uri: &str) -> (String, String, Option<Credentials>) {
        match MediaUri::parse(uri).unwrap().location {
            Location::Object {
                bucket,
                key,
                credentials,
            } => (bucket, key, credentials),
            other => panic!("not an object: {other:?}"),
        }
    }

    #[test]
    fn seed_s3_credentials_with_slash_in_secret() {
        let (bucket, key, creds) =
            object("s3://SOMEUSER:SOME/PASS@some_bucket/some_dir/some_file.mpg");
        assert_eq!(bucket, "some_bucket");
        assert_eq!(key, "some_dir/some_file.mpg");
        let creds = creds.unwrap();
        assert_eq!(creds.access_key, "SOMEUSER");
        assert_eq!(creds.secret, "SOME/PASS");
    }

    #[test]
    fn plain_object_uris_and_at_signs_in_keys() {
        let (bucket, key, creds) = object("s3://bucket/dir/with@sign.mp4");
        assert_eq!(
            (bucket.as_str(), key.as_str()),
            ("bucket", "dir/with@sign.mp4")
        );
        assert!(creds.is_none());
        let (_, key, creds) = object("gs://b/a:b@c.mp4");
        assert_eq!(key, "a:b@c.mp4");
        assert!(creds.is_none());
        let (bucket, key, _) = object("az://container/my%20blob.mov");
        assert_eq!(
            (bucket.as_str(), key.as_str()),
            ("container", "my blob.mov")
        );
    }

    #[test]
    fn redaction_hides_secrets() {
        let uri = MediaUri::parse("s3://AKIA:se/cr+et@bucket/key.mp4").unwrap();
        assert_eq!(uri.redacted(), "s3://REDACTED@bucket/key.mp4");
        assert!(!format!("{uri:?} {uri}").contains("cr+et"));
        let http =
            MediaUri::parse("https://user:pw@host.example/a.mp4?X-Amz-Signature=abc").unwrap();
        let shown = http.redacted();
        assert!(!shown.contains("pw") && !shown.contains("abc"), "{shown}");
        assert_eq!(redact_str("s3://K:S@b"), "s3://REDACTED@b");
    }

    #[test]
    fn credentials_end_at_the_first_at_and_redaction_reads_them_the_same_way() {
        // `@` and `%` escaped; `/`, `+` and `:` as they are.
        let uri = "s3://AK%2B1:a%40b/c+d%25e:f@bucket/dir/key.mp4";
        let (bucket, key, creds) = object(uri);
        assert_eq!((bucket.as_str(), key.as_str()), ("bucket", "dir/key.mp4"));
        let creds = creds.unwrap();
        assert_eq!(creds.access_key, "AK+1");
        assert_eq!(creds.secret, "a@b/c+d%e:f");
        let parsed = MediaUri::parse(uri).unwrap();
        assert_eq!(parsed.redacted(), "s3://REDACTED@bucket/dir/key.mp4");
        assert_eq!(redact_str(uri), "s3://REDACTED@bucket/dir/key.mp4");
        // An unescaped `@` in a secret: the userinfo ends at the first one, the
        // rest is not a valid bucket, and nothing of the secret is shown.
        for raw in [
            "s3://AK:p@ss@b/k",
            "gs://AK:p@ss@word@b/k",
            "az://AK:se/cr@et@c/blob",
        ] {
            let err = MediaUri::parse(raw).unwrap_err();
            assert_eq!(err.code, ErrorCode::UriMalformed, "{raw}");
            for shown in [err.message.clone(), redact_str(raw)] {
                assert!(!shown.contains("ss") && !shown.contains("et@"), "{shown}");
                assert!(!shown.contains("word") && !shown.contains(":p"), "{shown}");
            }
            assert_eq!(redact_str(raw), format!("{}://REDACTED", &raw[..2]));
        }
        // With no `:` before it, an `@` belongs to the key.
        let (bucket, key, creds) = object("s3://bucket/me@x.jpg");
        assert_eq!(
            (bucket.as_str(), key.as_str(), creds),
            ("bucket", "me@x.jpg", None)
        );
        assert_eq!(redact_str("s3://bucket/me@x.jpg"), "s3://bucket/me@x.jpg");
        // http(s) userinfo and query strings, and other URLs such as a store's.
        assert_eq!(
            redact_str("https://u:p%40ss@h.example/hook?token=t0k"),
            "https://REDACTED@h.example/hook?REDACTED"
        );
        assert_eq!(
            redact_str("postgres://nommer:pw@db.internal/nommer"),
            "postgres://REDACTED@db.internal/nommer"
        );
        assert_eq!(redact_str("ftp://"), "ftp://REDACTED");
        // An empty access key reads no credentials; the secret is still hidden.
        assert_eq!(redact_str("s3://:SECRET@bucket/k"), "s3://REDACTED");
        assert_eq!(
            redact_notify_url("https://u:p@hooks.example:8443/services/T0/B0/S3CR3T?t=1#f"),
            "https://REDACTED@hooks.example:8443/REDACTED?REDACTED"
        );
        assert_eq!(redact_notify_url("http://[::1]/"), "http://[::1]/");
        assert_eq!(redact_str("AK:secret@bucket/key"), "REDACTED");
        assert_eq!(redact_str("bucket/key"), "bucket/key");
    }

    #[test]
    fn file_uris_decode_and_require_absolute_paths() {
        let uri = MediaUri::parse("file:///media/my%20clip.mp4").unwrap();
        assert_eq!(
            uri.location(),
            &Location::File {
                path: PathBuf::from("/media/my clip.mp4")
            }
        );
        assert!(MediaUri::parse("file://localhost/tmp/a.mp4").is_ok());
        for bad in [
            "file:///srv/in/../../etc/passwd",
            "file:///srv/in/%2e%2e/%2E%2e/etc/passwd",
            "file:///srv/in/..%2F..%2Fetc%2Fpasswd",
            "file:///srv/./in/a.mp4",
            "file:///srv/in/%2e/a.mp4",
            "file:///srv/in/a%00.mp4",
            "file:///srv/in\\..\\a.mp4",
            "file:///srv/in/%5C..%5Ca.mp4",
            "file://localhost/srv/../etc/passwd",
        ] {
            let err = MediaUri::parse(bad).unwrap_err();
            assert_eq!(err.code, ErrorCode::UriNotAllowed, "{bad}");
        }
        assert_eq!(
            MediaUri::parse("file:///srv/a..b/.hidden/x.mp4")
                .unwrap()
                .location(),
            &Location::File {
                path: PathBuf::from("/srv/a..b/.hidden/x.mp4")
            }
        );
        for bad in ["file://a.mp4", "file://tmp/a.mp4", "file:///"] {
            let err = MediaUri::parse(bad).unwrap_err();
            assert_eq!(err.code, ErrorCode::UriMalformed, "{bad}");
        }
    }

    #[test]
    fn scheme_errors() {
        let err = MediaUri::parse("some-hostname.org:80/some_dir/some_file.mpg").unwrap_err();
        assert_eq!(err.code, ErrorCode::UriMalformed);
        assert!(err.message.starts_with("No protocol specified."));
        assert_eq!(
            MediaUri::parse("ftp://h/x").unwrap_err().code,
            ErrorCode::UriUnknownScheme
        );
        assert_eq!(
            MediaUri::parse("S3://b/k").unwrap_err().code,
            ErrorCode::UriUnknownScheme
        );
        assert_eq!(
            MediaUri::parse("s3://bucket").unwrap_err().code,
            ErrorCode::UriMalformed
        );
    }

    #[test]
    fn extensions() {
        let ext = |u: &str| MediaUri::parse(u).unwrap().extension();
        assert_eq!(ext("file:///a/b.MP4").as_deref(), Some("mp4"));
        assert_eq!(ext("https://h/x/y.webm?sig=1").as_deref(), Some("webm"));
        assert_eq!(ext("s3://b/noext"), None);
    }
}
