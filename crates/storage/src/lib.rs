//! Where media lives: a resolver keyed by URI scheme (`file`, `http(s)`,
//! `s3`, `gs`, `az`). Every source opens as a byte stream from an offset, so
//! transfers stream and resume after a dropped connection (`transfer.rs`).
//! Uploads are staged and committed only once complete, so a failed job never
//! leaves a half-written output at its destination.

pub mod file;
pub mod http;
pub mod net;
pub mod object;
pub mod transfer;

use nommer_model::uri::{Location, MediaUri, Scheme};
use nommer_model::{CodedError, ErrorCode};
pub use object::ObjectConfig;
use std::path::{Path, PathBuf};
use std::sync::Arc;
pub use transfer::Transferred;
use transfer::{Opened, Sink};

/// Reports bytes done and, when known, the total.
pub type ProgressFn = Arc<dyn Fn(u64, Option<u64>) + Send + Sync>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageErrorKind {
    /// The source does not exist.
    NotFound,
    /// A rule (file roots, address policy) forbids the location.
    Denied,
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

/// Which local paths `file://` URIs may name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileRoots {
    /// Any absolute path (feederd on loopback with no roots configured).
    Any,
    /// Only paths under these directories.
    Only(Vec<PathBuf>),
    /// No `file://` at all.
    Off,
}

impl FileRoots {
    pub fn check(&self, path: &Path) -> Result<(), CodedError> {
        match self {
            FileRoots::Any => Ok(()),
            FileRoots::Off => Err(CodedError::new(
                ErrorCode::UriNotAllowed,
                "file:// URIs are off: feederd listens beyond loopback and no file_roots are configured",
            )),
            FileRoots::Only(roots) => {
                if roots.iter().any(|root| path.starts_with(root)) {
                    return Ok(());
                }
                Err(CodedError::new(
                    ErrorCode::UriNotAllowed,
                    format!("{} is outside the configured file_roots", path.display()),
                ))
            }
        }
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
    http: http::HttpStorage,
    object: object::ObjectStorage,
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
            http: http::HttpStorage::new(policy),
            object: object::ObjectStorage::new(objects),
        }
    }

    pub fn objects(&self) -> &ObjectConfig {
        self.object.config()
    }

    fn file_path<'a>(&self, uri: &'a MediaUri) -> Result<Option<&'a Path>, StorageError> {
        let Location::File { path } = uri.location() else {
            return Ok(None);
        };
        self.file_roots
            .check(path)
            .map_err(|e| StorageError::new(StorageErrorKind::Denied, e.message))?;
        Ok(Some(path))
    }

    /// The source's bytes from `offset` on.
    async fn open(&self, uri: &MediaUri, offset: u64) -> Result<Opened, StorageError> {
        if let Some(path) = self.file_path(uri)? {
            return file::open(uri, path, offset).await;
        }
        match uri.location() {
            Location::Http { url } => self.http.open(uri, url, offset).await,
            Location::Object { .. } => self.object.open(uri, offset).await,
            Location::File { .. } => Err(unsupported(uri)),
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
        if let Some(src) = self.file_path(uri)? {
            return file::copy_local(uri, src, dest, progress).await;
        }
        let mut sink = Sink::file(dest.to_path_buf()).await?;
        let done =
            transfer::pump(uri, |offset| self.open(uri, offset), &mut sink, &progress).await?;
        if let Sink::File { file, path } = sink {
            file.sync_all().await.map_err(|e| {
                StorageError::new(
                    StorageErrorKind::Failed,
                    format!("writing {}: {e}", path.display()),
                )
            })?;
        }
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
        if let Some(path) = self.file_path(uri)? {
            return file::stage_local(&local, src, path, progress)
                .await
                .map(|(staged, _)| Staged::File(staged));
        }
        let size = tokio::fs::metadata(src).await.ok().map(|m| m.len());
        let open = |offset| file::open(&local, src, offset);
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
        if let (Some(from), Some(to)) = (self.file_path(src)?, self.file_path(dest)?) {
            return file::stage_local(src, from, to, progress)
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
        if let Some(path) = self.file_path(dest)? {
            let staged = file::StagedFile::beside(path).await?;
            let mut sink = Sink::file(staged.temp().to_path_buf()).await?;
            return match transfer::pump(src, open, &mut sink, &progress).await {
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
