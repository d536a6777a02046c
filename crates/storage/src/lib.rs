//! Where media lives. One [`Backend`] per URI scheme, registered in
//! `registry.rs` (`file`, `http(s)`, `s3`, `gs`, `az`); [`Storage`] routes
//! each call to the backend of its URI's scheme under the caller's
//! [`Rules`]. Every source opens as a byte stream from an offset, so
//! transfers stream and resume after a dropped connection (`transfer.rs`).
//! Uploads are staged and committed only once complete, so a failed job never
//! leaves a half-written output at its destination.

pub mod backend;
mod beneath;
pub mod file;
pub mod http;
pub mod net;
pub mod object;
pub mod registry;
pub mod roots;
pub mod transfer;

pub use backend::{Backend, Pending, Rules, Staged, Writer};
use nommer_model::uri::{MediaUri, Scheme};
pub use object::ObjectConfig;
pub use registry::Registry;
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

    /// What a backend says of a call it does not serve.
    pub fn unsupported(uri: &MediaUri, what: &str) -> StorageError {
        StorageError::new(
            StorageErrorKind::Failed,
            format!(
                "{}:// storage cannot {what} ({})",
                uri.scheme().as_str(),
                uri.redacted()
            ),
        )
    }
}

#[derive(Clone)]
pub struct Storage {
    rules: Rules,
    registry: Arc<Registry>,
    objects: Arc<ObjectConfig>,
}

impl Storage {
    /// The builtin backends with these settings.
    pub fn new(
        file_roots: FileRoots,
        policy: nommer_model::netpolicy::NetPolicy,
        objects: ObjectConfig,
    ) -> Storage {
        Storage {
            rules: Rules {
                file_roots,
                policy,
                max_download_bytes: u64::MAX,
            },
            registry: Arc::new(Registry::builtin(&objects)),
            objects: Arc::new(objects),
        }
    }

    /// This storage with `backend` serving `scheme` as well (or instead of
    /// the builtin one); the scheme parses from now on.
    pub fn with_backend(
        &self,
        scheme: Scheme,
        backend: Arc<dyn Backend>,
    ) -> Result<Storage, String> {
        let mut registry = (*self.registry).clone();
        registry.register(scheme, backend)?;
        let mut storage = self.clone();
        storage.registry = Arc::new(registry);
        Ok(storage)
    }

    /// Refuse sources larger than `max` bytes (`StorageErrorKind::TooLarge`).
    pub fn with_max_download_bytes(mut self, max: u64) -> Storage {
        self.rules.max_download_bytes = max;
        self
    }

    /// This storage under the stricter of its own address policy and
    /// `lease` (feederd's, carried in the lease).
    pub fn with_lease_policy(&self, lease: nommer_model::netpolicy::NetPolicy) -> Storage {
        let mut storage = self.clone();
        storage.rules.policy = self.rules.policy.strictest(lease);
        storage
    }

    /// This storage with `roots` for `file://`, when it has none of its own:
    /// a worker then allows only what feederd allowed.
    pub fn with_lease_roots(&self, roots: &[String], off: bool) -> Storage {
        let mut storage = self.clone();
        if storage.rules.file_roots != FileRoots::Any {
            return storage;
        }
        if off {
            storage.rules.file_roots = FileRoots::Off;
        } else if !roots.is_empty() {
            storage.rules.file_roots = FileRoots::only(roots.iter().map(PathBuf::from));
        }
        storage
    }

    pub fn objects(&self) -> &ObjectConfig {
        &self.objects
    }

    /// Whether this storage has a backend for `scheme`.
    pub fn serves(&self, scheme: Scheme) -> bool {
        self.registry.get(scheme).is_some()
    }

    fn backend(&self, uri: &MediaUri) -> Result<&Arc<dyn Backend>, StorageError> {
        self.registry.get(uri.scheme()).ok_or_else(|| {
            StorageError::new(
                StorageErrorKind::Failed,
                format!(
                    "{}:// storage is not available in this build ({})",
                    uri.scheme().as_str(),
                    uri.redacted()
                ),
            )
        })
    }

    /// The source's bytes from `offset` on, within `max_download_bytes`.
    async fn open(&self, uri: &MediaUri, offset: u64) -> Result<Opened, StorageError> {
        let opened = self.backend(uri)?.open(&self.rules, uri, offset).await?;
        transfer::bounded(uri, offset, opened, self.rules.max_download_bytes)
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
        self.backend(&probe)?.make_prefix(&self.rules, &probe).await
    }

    /// Remove everything under a prefix; how many files or objects.
    pub async fn remove_prefix(&self, prefix: &str) -> Result<u64, StorageError> {
        let probe = Self::prefix_probe(prefix)?;
        self.backend(&probe)?
            .remove_prefix(&self.rules, &probe, PREFIX_PROBE)
            .await
    }

    /// Remove one file or object this worker wrote (a published output
    /// rolled back); one that is not there is no error.
    pub async fn delete(&self, uri: &MediaUri) -> Result<(), StorageError> {
        self.backend(uri)?.delete(&self.rules, uri).await
    }

    /// Whether the source exists, where its backend can look with this
    /// storage's own settings (None: it cannot tell).
    pub async fn source_exists(&self, uri: &MediaUri) -> Result<Option<bool>, StorageError> {
        let backend = self.backend(uri)?;
        if !backend.can_look(uri) {
            return Ok(None);
        }
        Ok(Some(backend.head(&self.rules, uri).await?.is_some()))
    }

    /// Stream the source into the local file `dest`.
    pub async fn download(
        &self,
        uri: &MediaUri,
        dest: &Path,
        progress: ProgressFn,
    ) -> Result<Transferred, StorageError> {
        let backend = self.backend(uri)?;
        if let Some(done) = backend
            .download_fast(&self.rules, uri, dest, progress.clone())
            .await?
        {
            return Ok(done);
        }
        let mut sink = Sink::file(dest.to_path_buf()).await?;
        let done =
            transfer::pump(uri, |offset| self.open(uri, offset), &mut sink, &progress).await?;
        sink.finish_file().await?;
        Ok(done)
    }

    /// Whether [`stage_copy`](Self::stage_copy) can stream straight to `dest`
    /// (an HTTP PUT needs a file it can send again on retry).
    pub fn streams_to(&self, dest: &MediaUri) -> bool {
        self.backend(dest).is_ok_and(|b| b.streams_writes())
    }

    /// Write the local file `src` towards `uri` without making it visible yet.
    pub async fn stage_upload(
        &self,
        src: &Path,
        uri: &MediaUri,
        progress: ProgressFn,
    ) -> Result<Staged, StorageError> {
        let backend = self.backend(uri)?;
        if let Some(staged) = backend
            .stage_file(&self.rules, src, uri, progress.clone())
            .await?
        {
            return Ok(staged);
        }
        let local = MediaUri::parse(&format!("file://{}", src.display()))
            .map_err(|e| StorageError::new(StorageErrorKind::Failed, e.message))?;
        let size = tokio::fs::metadata(src).await.ok().map(|m| m.len());
        let open = |offset| file::open_own(src, offset);
        self.stage_stream(&local, open, uri, size, progress)
            .await
            .map(|(staged, _)| staged)
    }

    /// Stream the source `src` straight towards `dest` (the `copy` nommer):
    /// no scratch file, no process. Within one scheme the store may copy by
    /// itself.
    pub async fn stage_copy(
        &self,
        src: &MediaUri,
        dest: &MediaUri,
        progress: ProgressFn,
    ) -> Result<(Staged, Transferred), StorageError> {
        let source = self.backend(src)?;
        if src.scheme() == dest.scheme() {
            let copied = self
                .backend(dest)?
                .server_copy(&self.rules, src, dest, progress.clone())
                .await?;
            if let Some(copied) = copied {
                return Ok(copied);
            }
        }
        let size = source.head(&self.rules, src).await.ok().flatten();
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
        let writer = self
            .backend(dest)?
            .writer(&self.rules, dest, size_hint)
            .await?;
        let mut sink = Sink::Writer(writer);
        let result = transfer::pump(src, open, &mut sink, &progress).await;
        let Sink::Writer(writer) = sink else {
            unreachable!("made as a writer above")
        };
        match result {
            Ok(done) => Ok((writer.finish().await?, done)),
            Err(e) => {
                writer.abort().await;
                Err(e)
            }
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
        let uri = MediaUri::parse("https://media.example/a.mp4?sig=s3cret").unwrap();
        // A stated length over the bound is refused before any byte is read.
        let Err(e) = transfer::bounded(&uri, 0, opened(Some(11), &[11]), 10) else {
            panic!("a stated length over the bound");
        };
        assert_eq!(e.kind, StorageErrorKind::TooLarge);
        assert!(!e.message.contains("s3cret"), "{}", e.message);
        // No length, or a false one: the stream stops at the bound.
        for total in [None, Some(8)] {
            let mut stream = transfer::bounded(&uri, 0, opened(total, &[6, 6]), 10)
                .unwrap()
                .stream;
            assert!(stream.next().await.unwrap().is_ok());
            let e = stream.next().await.unwrap().unwrap_err();
            assert_eq!(e.kind, StorageErrorKind::TooLarge);
        }
        // A resumed transfer counts from its offset.
        let mut stream = transfer::bounded(&uri, 8, opened(None, &[3]), 10)
            .unwrap()
            .stream;
        assert!(stream.next().await.unwrap().is_err());
        let mut exact = transfer::bounded(&uri, 0, opened(Some(10), &[4, 6]), 10)
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
