//! A fault-injecting TCP proxy on loopback: it forwards to an upstream
//! address, and cuts the first `faults` connections once more than
//! `cut_after` bytes have come back from upstream.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub struct FaultProxy {
    pub addr: String,
    /// Connections cut so far.
    pub cuts: Arc<AtomicU32>,
}

impl FaultProxy {
    pub async fn start(upstream: &str, cut_after: u64, faults: u32) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let cuts = Arc::new(AtomicU32::new(0));
        let upstream = upstream.to_string();
        let counter = cuts.clone();
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let upstream = upstream.clone();
                let counter = counter.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    forward(client, server, cut_after, faults, counter).await;
                });
            }
        });
        FaultProxy { addr, cuts }
    }

    pub fn cuts(&self) -> u32 {
        self.cuts.load(Ordering::Relaxed)
    }
}

async fn forward(
    client: TcpStream,
    server: TcpStream,
    cut_after: u64,
    faults: u32,
    cuts: Arc<AtomicU32>,
) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let upstream = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
        let _ = server_write.shutdown().await;
    });
    let mut buf = vec![0u8; 64 * 1024];
    let mut sent = 0u64;
    loop {
        let n = match server_read.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        sent += n as u64;
        if sent > cut_after {
            let taken = cuts
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
                    (c < faults).then_some(c + 1)
                })
                .is_ok();
            if taken {
                // Send part of this read, then drop both sides mid-response.
                let _ = client_write.write_all(&buf[..n / 2]).await;
                upstream.abort();
                return;
            }
        }
        if client_write.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = client_write.shutdown().await;
    let _ = upstream.await;
}
