//! Where media lives: a resolver keyed by URI scheme. Downloads stream into
//! the job's scratch file; uploads are staged and committed only once complete,
//! so a failed job never leaves a half-written output at its destination.

pub mod file;
pub mod http;
pub mod net;

use nommer_model::uri::{Location, MediaUri, Scheme};
use nommer_model::{CodedError, ErrorCode};
use std::path::{Path, PathBuf};
use std::sync::Arc;

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
    matches!(scheme, Scheme::File | Scheme::Http | Scheme::Https)
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
}

/// An upload written but not yet visible at its destination.
pub enum Staged {
    File(file::StagedFile),
    Http(Box<http::StagedPut>),
}

impl Storage {
    pub fn new(file_roots: FileRoots, policy: nommer_model::netpolicy::NetPolicy) -> Storage {
        Storage {
            file_roots,
            http: http::HttpStorage::new(policy),
        }
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

    /// Stream the source into `dest`; returns the bytes written.
    pub async fn download(
        &self,
        uri: &MediaUri,
        dest: &Path,
        progress: ProgressFn,
    ) -> Result<u64, StorageError> {
        if let Some(path) = self.file_path(uri)? {
            return file::download(uri, path, dest, progress).await;
        }
        match uri.location() {
            Location::Http { url } => self.http.download(uri, url, dest, progress).await,
            _ => Err(unsupported(uri)),
        }
    }

    /// Write `src` towards the destination without making it visible yet.
    pub async fn stage_upload(
        &self,
        src: &Path,
        uri: &MediaUri,
        progress: ProgressFn,
    ) -> Result<Staged, StorageError> {
        if let Some(path) = self.file_path(uri)? {
            return file::stage(src, path, progress).await.map(Staged::File);
        }
        match uri.location() {
            Location::Http { url } => Ok(Staged::Http(Box::new(
                self.http.stage(uri, url, src, progress),
            ))),
            _ => Err(unsupported(uri)),
        }
    }
}

impl Staged {
    /// Make the upload visible at its destination.
    pub async fn commit(self) -> Result<(), StorageError> {
        match self {
            Staged::File(staged) => staged.commit().await,
            Staged::Http(put) => put.commit().await,
        }
    }

    /// Remove whatever was written; the destination is left as it was.
    pub async fn abort(self) {
        match self {
            Staged::File(staged) => staged.abort().await,
            Staged::Http(_) => {}
        }
    }
}
