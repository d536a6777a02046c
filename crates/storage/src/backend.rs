//! The one interface every storage scheme implements ([`Backend`]), the
//! writer and the staged upload it hands out, and what a call may touch
//! ([`Rules`], narrowed per lease).

use crate::roots::FileRoots;
use crate::transfer::Opened;
use crate::{ProgressFn, StorageError, Transferred};
use async_trait::async_trait;
use bytes::Bytes;
use nommer_model::netpolicy::NetPolicy;
use nommer_model::uri::MediaUri;
use std::path::Path;

/// What a storage call may touch. A worker's own rules, made no looser by
/// the lease it runs (`Storage::with_lease_policy`, `with_lease_roots`).
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    /// Where `file://` URIs may point.
    pub file_roots: FileRoots,
    /// Which addresses `http(s)://` URIs may reach.
    pub policy: NetPolicy,
    /// The most bytes read from any one source.
    pub max_download_bytes: u64,
}

/// One URI scheme's storage. Reads resume from an offset; writes are staged
/// and become visible only on [`Staged::commit`], so a failed job leaves its
/// destination as it was. Registered once, in `registry.rs`.
#[async_trait]
pub trait Backend: Send + Sync {
    /// The object's bytes from `offset` on, and its whole size when known.
    async fn open(
        &self,
        rules: &Rules,
        uri: &MediaUri,
        offset: u64,
    ) -> Result<Opened, StorageError>;

    /// The object's size, or None when it does not exist.
    async fn head(&self, rules: &Rules, uri: &MediaUri) -> Result<Option<u64>, StorageError>;

    /// A writer towards `uri`; nothing shows there until the staged upload
    /// it finishes into is committed.
    async fn writer(
        &self,
        rules: &Rules,
        uri: &MediaUri,
        size_hint: Option<u64>,
    ) -> Result<Box<dyn Writer>, StorageError>;

    /// Remove one object; one that is not there is no error.
    async fn delete(&self, rules: &Rules, uri: &MediaUri) -> Result<(), StorageError>;

    /// Remove everything under a prefix, given as `probe`, the URI of the
    /// name `probe_name` in it; how many objects went.
    async fn remove_prefix(
        &self,
        rules: &Rules,
        probe: &MediaUri,
        probe_name: &str,
    ) -> Result<u64, StorageError>;

    /// Make a prefix (given as in `remove_prefix`) ready to be written
    /// under. Object stores need nothing.
    async fn make_prefix(&self, _rules: &Rules, _probe: &MediaUri) -> Result<(), StorageError> {
        Ok(())
    }

    /// A copy from `src`, of this same scheme, that the store makes itself,
    /// staged to happen at commit. None when it cannot make this one.
    async fn server_copy(
        &self,
        _rules: &Rules,
        _src: &MediaUri,
        _dest: &MediaUri,
        _progress: ProgressFn,
    ) -> Result<Option<(Staged, Transferred)>, StorageError> {
        Ok(None)
    }

    /// Stage the local file `src` towards `uri` by the backend's own means
    /// (an HTTP PUT that may be sent again). None: stream it to a writer.
    async fn stage_file(
        &self,
        _rules: &Rules,
        _src: &Path,
        _uri: &MediaUri,
        _progress: ProgressFn,
    ) -> Result<Option<Staged>, StorageError> {
        Ok(None)
    }

    /// Copy the source into the local file `dest` by a faster path than
    /// streaming it (the kernel's file copy). None: stream it.
    async fn download_fast(
        &self,
        _rules: &Rules,
        _uri: &MediaUri,
        _dest: &Path,
        _progress: ProgressFn,
    ) -> Result<Option<Transferred>, StorageError> {
        Ok(None)
    }

    /// Whether feederd, with its own settings for this backend, may look at
    /// `uri` when a job is submitted (credentials in the URI or configured).
    fn can_look(&self, _uri: &MediaUri) -> bool {
        false
    }

    /// Whether a copy may stream straight to this backend (false: a write
    /// needs a local file it can send again, see `stage_file`).
    fn streams_writes(&self) -> bool {
        true
    }
}

/// Bytes on their way to a destination.
#[async_trait]
pub trait Writer: Send {
    async fn write(&mut self, chunk: Bytes) -> Result<(), StorageError>;

    /// Everything is written; the upload is still not visible.
    async fn finish(self: Box<Self>) -> Result<Staged, StorageError>;

    /// Give up: whatever was sent is discarded.
    async fn abort(self: Box<Self>);
}

/// An upload whose bytes are all written, waiting to be made visible.
#[async_trait]
pub trait Pending: Send {
    async fn commit(self: Box<Self>) -> Result<(), StorageError>;
    async fn abort(self: Box<Self>);
}

/// An upload written but not yet visible at its destination.
pub struct Staged(Box<dyn Pending>);

impl Staged {
    pub fn new(pending: impl Pending + 'static) -> Staged {
        Staged(Box::new(pending))
    }

    /// Make the upload visible at its destination.
    pub async fn commit(self) -> Result<(), StorageError> {
        self.0.commit().await
    }

    /// Remove whatever was written; the destination is left as it was.
    pub async fn abort(self) {
        self.0.abort().await
    }
}
