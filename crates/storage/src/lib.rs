//! Where media lives: a resolver keyed by URI scheme (`file`, `http(s)`,
//! `s3`, `gs`, `az`). Every source opens as a byte stream from an offset, so
//! transfers stream and resume after a dropped connection (`transfer.rs`).
//! Uploads are staged and committed only once complete, so a failed job never
//! leaves a half-written output at its destination.

mod beneath;
pub mod file;
pub mod http;
pub mod net;
pub mod object;
pub mod roots;
pub mod transfer;

use nommer_model::uri::{Location, MediaUri, Scheme};
pub use object::ObjectConfig;
pub use roots::{Anchor, FileRoots};
use std::path::{Path, PathBuf};
use std::sync::Arc;
pub use transfer::Transferred;
use transfer::{Opened, Sink};

/// The name a prefix is given to be parsed as a URI (`Storage::make_prefix`).
const PREFIX_PROBE: &str = "nommer-prefix";

/// Reports bytes done and, when known, the total.
pub type ProgressFn = Arc<dyn Fn(u64, Option<u64>) + Send + Sync>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageErrorKind {
    /// The source does not exist.
    NotFound,
    /// A rule (file roots, address policy) forbids the location.
    Denied,
    /// The source is larger than `max_download_bytes`.
    TooLarge,
    /// Worth retrying later (network trouble, 5xx).
    Transient,
    /// Anything else (permissions, full disk, unsupported).
    Failed,
}

/// A storage failure with a message that never carries credentials.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct StorageError {
    pub kind: StorageErrorKind,
    pub message: String,
}

impl StorageError {
    pub fn new(kind: StorageErrorKind, message: impl Into<String>) -> StorageError {
        StorageError {
            kind,
            message: message.into(),
        }
    }

    /// The seed's message for a missing source.
    pub fn not_found(uri: &MediaUri) -> StorageError {
        StorageError::new(
            StorageErrorKind::NotFound,
            format!(
                "The specified input file cannot be found: {}",
                uri.redacted()
            ),
        )
    }
}

/// The schemes this build can read and write.
pub fn supports(scheme: Scheme) -> bool {
    matches!(
        scheme,
        Scheme::File | Scheme::Http | Scheme::Https | Scheme::S3 | Scheme::Gs | Scheme::Az
    )
}

pub fn unsupported(uri: &MediaUri) -> StorageError {
    StorageError::new(
        StorageErrorKind::Failed,
        format!(
            "{}:// storage is not available in this build ({})",
            uri.scheme().as_str(),
            uri.redacted()
        ),
    )
}

#[derive(Clone)]
pub struct Storage {
    pub file_roots: FileRoots,
    policy: nommer_model::netpolicy::NetPolicy,
    http: http::HttpStorage,
    /// The client for the last stricter policy a lease asked for: a
    /// feederd's policy is the same on every lease, so it is built once.
    stricter: Arc<std::sync::Mutex<Option<http::HttpStorage>>>,
    object: object::ObjectStorage,
    /// The most bytes read from any one source.
    max_download_bytes: u64,
}

/// An upload written but not yet visible at its destination.
pub enum Staged {
    File(file::StagedFile),
    Http(Box<http::StagedPut>),
    Object(Box<object::StagedObject>),
    /// Made by the object store itself at commit.
    ServerCopy(Box<object::ServerCopy>),
}

impl Storage {
    pub fn new(
        file_roots: FileRoots,
        policy: nommer_model::netpolicy::NetPolicy,
        objects: ObjectConfig,
    ) -> Storage {
        Storage {
            file_roots,
            policy,
            http: http::HttpStorage::new(policy),
            stricter: Arc::default(),
            object: object::ObjectStorage::new(objects),
            max_download_bytes: u64::MAX,
        }
    }

    /// Refuse sources larger than `max` bytes (`StorageErrorKind::TooLarge`).
    pub fn with_max_download_bytes(mut self, max: u64) -> Storage {
        self.max_download_bytes = max;
        self
    }

    /// This storage under the stricter of its own address policy and
    /// `lease` (feederd's, carried in the lease).
    pub fn with_lease_policy(&self, lease: nommer_model::netpolicy::NetPolicy) -> Storage {
        let policy = self.policy.strictest(lease);
        let mut storage = self.clone();
        if policy == self.policy {
            return storage;
        }
        let mut stricter = self.stricter.lock().unwrap_or_else(|e| e.into_inner());
        let http = match stricter.as_ref() {
            Some(http) if http.policy() == policy => http.clone(),
            _ => stricter.insert(http::HttpStorage::new(policy)).clone(),
        };
        storage.policy = policy;
        storage.http = http;
        storage
    }

    fn too_large(&self, uri: &MediaUri, size: u64) -> StorageError {
        StorageError::new(
            StorageErrorKind::TooLarge,
            format!(
                "the source {} is larger than max_download_bytes ({size} > {} bytes)",
                uri.redacted(),
                self.max_download_bytes
            ),
        )
    }

    /// A `file://` source, opened beneath its root and within the size bound.
    fn open_file_source(
        &self,
        uri: &MediaUri,
        anchor: &Anchor,
    ) -> Result<std::fs::File, StorageError> {
        let file = file::open_source(uri, anchor)?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        if size > self.max_download_bytes {
            return Err(self.too_large(uri, size));
        }
        Ok(file)
    }

    /// Cut a source's stream off past `max_download_bytes`: a server that
    /// states no length, or lies about it, gets no further than the bound.
    fn bounded(&self, uri: &MediaUri, offset: u64, opened: Opened) -> Result<Opened, StorageError> {
        let max = self.max_download_bytes;
        if let Some(total) = opened.total.filter(|t| *t > max) {
            return Err(self.too_large(uri, total));
        }
        let error = self.too_large(uri, max.saturating_add(1));
        let mut reached = offset;
        let stream = futures::StreamExt::map(opened.stream, move |chunk| {
            let chunk = chunk?;
            reached += chunk.len() as u64;
            if reached > max {
                return Err(error.clone());
            }
            Ok(chunk)
        });
        Ok(Opened {
            total: opened.total,
            stream: futures::StreamExt::boxed(stream),
        })
    }

    pub fn objects(&self) -> &ObjectConfig {
        self.object.config()
    }

    /// For a `file://` URI, the checked path and the root to open it beneath.
    fn file_anchor(&self, uri: &MediaUri) -> Result<Option<Anchor>, StorageError> {
        let Location::File { path } = uri.location() else {
            return Ok(None);
        };
        self.file_roots
            .anchor(path)
            .map(Some)
            .map_err(|e| StorageError::new(StorageErrorKind::Denied, e.message))
    }

    /// This storage with `roots` for `file://`, when it has none of its own:
    /// a worker then allows only what feederd allowed.
    pub fn with_lease_roots(&self, roots: &[String], off: bool) -> Storage {
        let mut storage = self.clone();
        if storage.file_roots != FileRoots::Any {
            return storage;
        }
        if off {
            storage.file_roots = FileRoots::Off;
        } else if !roots.is_empty() {
            storage.file_roots = FileRoots::only(roots.iter().map(PathBuf::from));
        }
        storage
    }

    /// The source's bytes from `offset` on.
    async fn open(&self, uri: &MediaUri, offset: u64) -> Result<Opened, StorageError> {
        let opened = if let Some(anchor) = self.file_anchor(uri)? {
            let file = self.open_file_source(uri, &anchor)?;
            file::stream(file, &anchor.path, offset).await?
        } else {
            match uri.location() {
                Location::Http { url } => self.http.open(uri, url, offset).await?,
                Location::Object { .. } => self.object.open(uri, offset).await?,
                Location::File { .. } => return Err(unsupported(uri)),
            }
        };
        self.bounded(uri, offset, opened)
    }

    /// A prefix (`file:///dir/`, `s3://bucket/key/`) as the URI of a name in
    /// it, which is what the parsers take.
    fn prefix_probe(prefix: &str) -> Result<MediaUri, StorageError> {
        MediaUri::parse(&format!("{prefix}{PREFIX_PROBE}"))
            .map_err(|e| StorageError::new(StorageErrorKind::Failed, e.message))
    }

    /// Make a prefix ready to be written under: a directory for `file://`
    /// (made if missing); nothing for the object stores.
    pub async fn make_prefix(&self, prefix: &str) -> Result<(), StorageError> {
        let probe = Self::prefix_probe(prefix)?;
        let Some(anchor) = self.file_anchor(&probe)? else {
            return Ok(());
        };
        beneath::make_dir(&anchor.parent()).map_err(|e| {
            StorageError::new(
                StorageErrorKind::Failed,
                format!("making {}: {e}", anchor.parent().path.display()),
            )
        })
    }

    /// Remove everything under a prefix; how many files or objects.
    pub async fn remove_prefix(&self, prefix: &str) -> Result<u64, StorageError> {
        let probe = Self::prefix_probe(prefix)?;
        if let Some(anchor) = self.file_anchor(&probe)? {
            let dir = anchor.parent();
            return tokio::task::spawn_blocking(move || beneath::remove_flat_dir(&dir))
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e)))
                .map_err(|e| {
                    StorageError::new(StorageErrorKind::Failed, format!("removing {prefix}: {e}"))
                });
        }
        match probe.location() {
            Location::Object { .. } => self.object.remove_prefix(&probe, PREFIX_PROBE).await,
            _ => Err(unsupported(&probe)),
        }
    }

    /// Remove one file or object this worker wrote (a published output
    /// rolled back); one that is not there is no error.
    pub async fn delete(&self, uri: &MediaUri) -> Result<(), StorageError> {
        if let Some(anchor) = self.file_anchor(uri)? {
            let dir = match beneath::open_dir(&anchor.parent()) {
                Ok(dir) => dir,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) => {
                    return Err(StorageError::new(
                        StorageErrorKind::Failed,
                        format!("removing {}: {e}", anchor.path.display()),
                    ))
                }
            };
            let name = anchor
                .path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .to_string();
            beneath::remove_in(&dir, &name);
            return Ok(());
        }
        match uri.location() {
            Location::Object { .. } => self.object.delete(uri).await,
            _ => Err(unsupported(uri)),
        }
    }

    /// Whether the source exists, for the object stores (None: cannot tell).
    pub async fn object_exists(&self, uri: &MediaUri) -> Result<Option<bool>, StorageError> {
        if !matches!(uri.location(), Location::Object { .. }) {
            return Ok(None);
        }
        Ok(Some(self.object.head(uri).await?.is_some()))
    }

    /// Stream the source into the local file `dest`.
    pub async fn download(
        &self,
        uri: &MediaUri,
        dest: &Path,
        progress: ProgressFn,
    ) -> Result<Transferred, StorageError> {
        if let Some(anchor) = self.file_anchor(uri)? {
            let input = self.open_file_source(uri, &anchor)?;
            let output = std::fs::File::create(dest).map_err(|e| {
                StorageError::new(
                    StorageErrorKind::Failed,
                    format!("creating {}: {e}", dest.display()),
                )
            })?;
            return file::copy(
                input,
                output,
                &anchor.path,
                self.max_download_bytes,
                progress,
            )
            .await;
        }
        let mut sink = Sink::file(dest.to_path_buf()).await?;
        let done =
            transfer::pump(uri, |offset| self.open(uri, offset), &mut sink, &progress).await?;
        sink.finish_file().await?;
        Ok(done)
    }

    /// Whether [`stage_copy`](Self::stage_copy) can stream straight to `dest`
    /// (an HTTP PUT needs a file it can send again on retry).
    pub fn streams_to(dest: &MediaUri) -> bool {
        !matches!(dest.location(), Location::Http { .. })
    }

    /// Write the local file `src` towards `uri` without making it visible yet.
    pub async fn stage_upload(
        &self,
        src: &Path,
        uri: &MediaUri,
        progress: ProgressFn,
    ) -> Result<Staged, StorageError> {
        if let Location::Http { url } = uri.location() {
            return Ok(Staged::Http(Box::new(
                self.http.stage(uri, url, src, progress),
            )));
        }
        let local = MediaUri::parse(&format!("file://{}", src.display()))
            .map_err(|e| StorageError::new(StorageErrorKind::Failed, e.message))?;
        if let Some(anchor) = self.file_anchor(uri)? {
            let input = std::fs::File::open(src).map_err(|e| {
                StorageError::new(
                    StorageErrorKind::Failed,
                    format!("reading {}: {e}", src.display()),
                )
            })?;
            return file::stage(input, &anchor, u64::MAX, progress)
                .await
                .map(|(staged, _)| Staged::File(staged));
        }
        let size = tokio::fs::metadata(src).await.ok().map(|m| m.len());
        let open = |offset| file::open_own(src, offset);
        self.stage_stream(&local, open, uri, size, progress)
            .await
            .map(|(staged, _)| staged)
    }

    /// Stream the source `src` straight towards `dest` (the `copy` nommer):
    /// no scratch file, no process.
    pub async fn stage_copy(
        &self,
        src: &MediaUri,
        dest: &MediaUri,
        progress: ProgressFn,
    ) -> Result<(Staged, Transferred), StorageError> {
        if let (Some(from), Some(to)) = (self.file_anchor(src)?, self.file_anchor(dest)?) {
            let input = self.open_file_source(src, &from)?;
            return file::stage(input, &to, self.max_download_bytes, progress)
                .await
                .map(|(staged, done)| (Staged::File(staged), done));
        }
        if let Some((copy, bytes)) = self.object.stage_server_copy(src, dest).await? {
            tracing::info!(source = %src, dest = %dest, bytes, "server-side copy: the object store makes it at commit");
            let done = Transferred { bytes, retries: 0 };
            return Ok((Staged::ServerCopy(Box::new(copy)), done));
        }
        let size = match src.location() {
            Location::Object { .. } => self.object.head(src).await.ok().flatten(),
            _ => None,
        };
        let open = |offset| self.open(src, offset);
        self.stage_stream(src, open, dest, size, progress).await
    }

    async fn stage_stream<O, Fut>(
        &self,
        src: &MediaUri,
        open: O,
        dest: &MediaUri,
        size_hint: Option<u64>,
        progress: ProgressFn,
    ) -> Result<(Staged, Transferred), StorageError>
    where
        O: Fn(u64) -> Fut,
        Fut: std::future::Future<Output = Result<Opened, StorageError>>,
    {
        if let Some(anchor) = self.file_anchor(dest)? {
            let (staged, writer) = file::StagedFile::beside(&anchor).await?;
            let mut sink = Sink::File {
                file: tokio::fs::File::from_std(writer),
                path: anchor.path.clone(),
            };
            let pumped = match transfer::pump(src, open, &mut sink, &progress).await {
                Ok(done) => sink.finish_file().await.map(|()| done),
                Err(e) => Err(e),
            };
            return match pumped {
                Ok(done) => Ok((Staged::File(staged), done)),
                Err(e) => {
                    drop(sink);
                    staged.abort().await;
                    Err(e)
                }
            };
        }
        if !matches!(dest.location(), Location::Object { .. }) {
            return Err(unsupported(dest));
        }
        let mut sink = Sink::Object(self.object.sink(dest, size_hint).await?);
        let result = transfer::pump(src, open, &mut sink, &progress).await;
        let Sink::Object(sink) = sink else {
            unreachable!("made as an object sink above")
        };
        match result {
            Ok(done) => Ok((Staged::Object(Box::new(sink.finish().await?)), done)),
            Err(e) => {
                sink.abort().await;
                Err(e)
            }
        }
    }
}

impl Staged {
    /// Make the upload visible at its destination.
    pub async fn commit(self) -> Result<(), StorageError> {
        match self {
            Staged::File(staged) => staged.commit().await,
            Staged::Http(put) => put.commit().await,
            Staged::Object(object) => object.commit().await,
            Staged::ServerCopy(copy) => copy.commit().await,
        }
    }

    /// Remove whatever was written; the destination is left as it was.
    pub async fn abort(self) {
        match self {
            Staged::File(staged) => staged.abort().await,
            Staged::Http(_) => {}
            Staged::Object(object) => object.abort().await,
            Staged::ServerCopy(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use futures::StreamExt;

    fn opened(total: Option<u64>, chunks: &[usize]) -> Opened {
        let chunks: Vec<Result<Bytes, StorageError>> = chunks
            .iter()
            .map(|n| Ok(Bytes::from(vec![0u8; *n])))
            .collect();
        Opened {
            total,
            stream: futures::stream::iter(chunks).boxed(),
        }
    }

    #[tokio::test]
    async fn a_source_past_max_download_bytes_is_cut_off() {
        let storage = Storage::new(FileRoots::Any, Default::default(), Default::default())
            .with_max_download_bytes(10);
        let uri = MediaUri::parse("https://media.example/a.mp4?sig=s3cret").unwrap();
        // A stated length over the bound is refused before any byte is read.
        let Err(e) = storage.bounded(&uri, 0, opened(Some(11), &[11])) else {
            panic!("a stated length over the bound");
        };
        assert_eq!(e.kind, StorageErrorKind::TooLarge);
        assert!(!e.message.contains("s3cret"), "{}", e.message);
        // No length, or a false one: the stream stops at the bound.
        for total in [None, Some(8)] {
            let mut stream = storage
                .bounded(&uri, 0, opened(total, &[6, 6]))
                .unwrap()
                .stream;
            assert!(stream.next().await.unwrap().is_ok());
            let e = stream.next().await.unwrap().unwrap_err();
            assert_eq!(e.kind, StorageErrorKind::TooLarge);
        }
        // A resumed transfer counts from its offset.
        let mut stream = storage.bounded(&uri, 8, opened(None, &[3])).unwrap().stream;
        assert!(stream.next().await.unwrap().is_err());
        let mut exact = storage
            .bounded(&uri, 0, opened(Some(10), &[4, 6]))
            .unwrap()
            .stream;
        assert!(exact.next().await.unwrap().is_ok() && exact.next().await.unwrap().is_ok());
    }

    #[tokio::test]
    async fn a_lease_policy_can_only_tighten_the_workers_own() {
        use nommer_model::netpolicy::NetPolicy;
        let open = Storage::new(FileRoots::Any, NetPolicy::default(), Default::default());
        let strict = NetPolicy {
            forbid_private: true,
            ..Default::default()
        };
        let uri = MediaUri::parse("http://127.0.0.1:9/a.mp4").unwrap();
        let denied = |storage: Storage| {
            let uri = uri.clone();
            async move {
                match storage.open(&uri, 0).await {
                    Err(e) => e.kind == StorageErrorKind::Denied,
                    Ok(_) => false,
                }
            }
        };
        assert!(!denied(open.with_lease_policy(NetPolicy::default())).await);
        assert!(denied(open.with_lease_policy(strict)).await);
        // The stricter client is made once and kept for the next lease.
        assert!(denied(open.with_lease_policy(strict)).await);
        assert!(open.stricter.lock().unwrap().is_some());
        // A lease cannot loosen a worker's own policy.
        let own = Storage::new(FileRoots::Any, strict, Default::default());
        assert!(denied(own.with_lease_policy(NetPolicy::default())).await);
    }

    #[tokio::test]
    async fn a_file_that_grows_past_the_bound_is_not_read_past_it() {
        let dir = tempfile::tempdir().unwrap();
        let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
        std::fs::write(&src, [1u8; 20]).unwrap();
        let copy = |max| {
            let input = std::fs::File::open(&src).unwrap();
            let output = std::fs::File::create(&dst).unwrap();
            file::copy(input, output, &src, max, Arc::new(|_, _| {}))
        };
        let e = copy(10).await.unwrap_err();
        assert_eq!(e.kind, StorageErrorKind::TooLarge);
        assert_eq!(
            std::fs::metadata(&dst).unwrap().len(),
            11,
            "read one byte past, no more"
        );
        assert_eq!(copy(20).await.unwrap().bytes, 20);
    }
}
