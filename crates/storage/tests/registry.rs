//! A scheme added from outside the builtin registry: one backend module (an
//! in-memory store, here) and one registration. Its URIs parse from then
//! on, and every Storage operation reaches it.

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use nommer_model::uri::{Form, Location, MediaUri, Scheme};
use nommer_storage::transfer::Opened;
use nommer_storage::{Backend, FileRoots, Pending, Rules, Staged, Storage, StorageError, Writer};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

type Objects = Arc<Mutex<BTreeMap<String, Bytes>>>;

/// `mem://bucket/key`, kept in a map.
#[derive(Default)]
struct Memory(Objects);

fn name(uri: &MediaUri) -> String {
    match uri.location() {
        Location::Object { bucket, key, .. } => format!("{bucket}/{key}"),
        _ => unreachable!("mem:// has the object form"),
    }
}

#[async_trait]
impl Backend for Memory {
    async fn open(&self, _: &Rules, uri: &MediaUri, offset: u64) -> Result<Opened, StorageError> {
        let bytes = self.0.lock().unwrap().get(&name(uri)).cloned();
        let bytes = bytes.ok_or_else(|| StorageError::not_found(uri))?;
        let total = bytes.len() as u64;
        let rest = bytes.slice(offset as usize..);
        // Two chunks, so the stream is one.
        let (a, b) = rest.split_at(rest.len() / 2);
        let chunks = vec![Ok(Bytes::copy_from_slice(a)), Ok(Bytes::copy_from_slice(b))];
        Ok(Opened {
            total: Some(total),
            stream: futures::stream::iter(chunks).boxed(),
        })
    }

    async fn head(&self, _: &Rules, uri: &MediaUri) -> Result<Option<u64>, StorageError> {
        Ok(self
            .0
            .lock()
            .unwrap()
            .get(&name(uri))
            .map(|b| b.len() as u64))
    }

    async fn writer(
        &self,
        _: &Rules,
        uri: &MediaUri,
        _: Option<u64>,
    ) -> Result<Box<dyn Writer>, StorageError> {
        Ok(Box::new(MemoryWrite {
            objects: self.0.clone(),
            name: name(uri),
            bytes: Vec::new(),
        }))
    }

    async fn delete(&self, _: &Rules, uri: &MediaUri) -> Result<(), StorageError> {
        self.0.lock().unwrap().remove(&name(uri));
        Ok(())
    }

    async fn remove_prefix(
        &self,
        _: &Rules,
        probe: &MediaUri,
        probe_name: &str,
    ) -> Result<u64, StorageError> {
        let full = name(probe);
        let prefix = full.strip_suffix(probe_name).unwrap();
        let mut objects = self.0.lock().unwrap();
        let before = objects.len();
        objects.retain(|k, _| !k.starts_with(prefix));
        Ok((before - objects.len()) as u64)
    }

    fn can_look(&self, _: &MediaUri) -> bool {
        true
    }
}

struct MemoryWrite {
    objects: Objects,
    name: String,
    bytes: Vec<u8>,
}

#[async_trait]
impl Writer for MemoryWrite {
    async fn write(&mut self, chunk: Bytes) -> Result<(), StorageError> {
        self.bytes.extend_from_slice(&chunk);
        Ok(())
    }

    async fn finish(self: Box<Self>) -> Result<Staged, StorageError> {
        Ok(Staged::new(*self))
    }

    async fn abort(self: Box<Self>) {}
}

#[async_trait]
impl Pending for MemoryWrite {
    async fn commit(self: Box<Self>) -> Result<(), StorageError> {
        let bytes = Bytes::from(self.bytes);
        self.objects.lock().unwrap().insert(self.name, bytes);
        Ok(())
    }

    async fn abort(self: Box<Self>) {}
}

const MEM: Scheme = Scheme::new("mem", Form::Object);

#[tokio::test]
async fn a_registered_scheme_parses_and_serves_every_operation() {
    let builtin = Storage::new(FileRoots::Any, Default::default(), Default::default());
    assert!(!builtin.serves(MEM));
    let memory = Memory::default();
    let objects = memory.0.clone();
    let storage = builtin.with_backend(MEM, Arc::new(memory)).unwrap();
    assert!(storage.serves(MEM));
    let uri = |s: &str| MediaUri::parse(s).unwrap();
    assert_eq!(uri("mem://b/in.bin").scheme(), MEM);

    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("in.bin");
    std::fs::write(&local, b"nommer registry test bytes").unwrap();
    let quiet: nommer_storage::ProgressFn = Arc::new(|_, _| {});

    // file -> mem: nothing shows before commit.
    let staged = storage
        .stage_upload(&local, &uri("mem://b/in.bin"), quiet.clone())
        .await
        .unwrap();
    assert!(objects.lock().unwrap().is_empty());
    staged.commit().await.unwrap();
    assert_eq!(
        storage.source_exists(&uri("mem://b/in.bin")).await.unwrap(),
        Some(true)
    );
    assert_eq!(
        storage.source_exists(&uri("mem://b/none")).await.unwrap(),
        Some(false)
    );

    // mem -> file, streamed through the transfer loop.
    let back = dir.path().join("back.bin");
    let done = storage
        .download(&uri("mem://b/in.bin"), &back, quiet.clone())
        .await
        .unwrap();
    assert_eq!(done.bytes, 26);
    assert_eq!(std::fs::read(&back).unwrap(), b"nommer registry test bytes");

    // mem -> mem streams too (the toy backend has no server copy).
    let (staged, _) = storage
        .stage_copy(
            &uri("mem://b/in.bin"),
            &uri("mem://b/work/copy.bin"),
            quiet.clone(),
        )
        .await
        .unwrap();
    staged.commit().await.unwrap();
    assert_eq!(storage.remove_prefix("mem://b/work/").await.unwrap(), 1);
    storage.delete(&uri("mem://b/in.bin")).await.unwrap();
    assert!(objects.lock().unwrap().is_empty());

    // A missing source gives the seed's message.
    let e = storage
        .download(&uri("mem://b/in.bin"), &back, quiet)
        .await
        .unwrap_err();
    assert_eq!(
        e.message,
        "The specified input file cannot be found: mem://b/in.bin"
    );
}

#[test]
fn a_scheme_name_cannot_change_form_or_be_malformed() {
    assert!(Scheme::register(Scheme::new("s3", Form::File)).is_err());
    assert!(Scheme::register(Scheme::new("Bad Name", Form::Object)).is_err());
    assert!(Scheme::register(Scheme::new("mem2", Form::Object)).is_ok());
    // Unknown schemes are listed with what is known.
    let e = MediaUri::parse("nope://b/k").unwrap_err();
    assert!(
        e.message.contains("known: file, http, https, s3, gs, az"),
        "{}",
        e.message
    );
}
