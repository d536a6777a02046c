//! TCP proxies on loopback: [`FaultProxy`] cuts the first `faults`
//! connections once more than `cut_after` bytes have come back from upstream;
//! [`ChaosProxy`] cuts one connection mid-transfer each time it is armed (the
//! soak's storage faults); [`Balancer`] spreads connections over replicas.

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

/// A proxy that cuts connections when told to: each [`ChaosProxy::arm`] cuts
/// the next connection that moves data, in either direction (a download or
/// an upload mid-body), once. Cuts are counted as they happen.
pub struct ChaosProxy {
    pub addr: String,
    armed: Arc<AtomicU32>,
    cuts: Arc<AtomicU32>,
}

/// At most this many cuts wait for traffic: a quiet proxy does not bank them.
const MOST_ARMED: u32 = 2;

impl ChaosProxy {
    pub async fn start(upstream: &str) -> ChaosProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (armed, cuts) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
        let gate = Gate {
            armed: armed.clone(),
            cuts: cuts.clone(),
        };
        let upstream = upstream.to_string();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (upstream, gate) = (upstream.clone(), gate.clone());
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    let up = pump(client_read, server_write, gate.clone());
                    let down = pump(server_read, client_write, gate);
                    tokio::pin!(up, down);
                    let (mut up_done, mut down_done) = (false, false);
                    // A cut in either direction ends both; an end waits for the other.
                    while !(up_done && down_done) {
                        let cut = tokio::select! {
                            cut = &mut up, if !up_done => { up_done = true; cut }
                            cut = &mut down, if !down_done => { down_done = true; cut }
                        };
                        if cut {
                            return;
                        }
                    }
                });
            }
        });
        ChaosProxy { addr, armed, cuts }
    }

    /// Cut the next connection that moves data.
    pub fn arm(&self) {
        let _ = self
            .armed
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |a| {
                (a < MOST_ARMED).then_some(a + 1)
            });
    }

    /// Drop cuts not yet made.
    pub fn disarm(&self) {
        self.armed.store(0, Ordering::Relaxed);
    }

    /// Connections cut so far.
    pub fn cuts(&self) -> u32 {
        self.cuts.load(Ordering::Relaxed)
    }
}

#[derive(Clone)]
struct Gate {
    armed: Arc<AtomicU32>,
    cuts: Arc<AtomicU32>,
}

impl Gate {
    fn take(&self) -> bool {
        let taken = self
            .armed
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |a| a.checked_sub(1))
            .is_ok();
        if taken {
            self.cuts.fetch_add(1, Ordering::Relaxed);
        }
        taken
    }
}

/// Copy one direction until it ends (false), or until the gate cuts it after
/// passing on half of a read, so the cut lands mid-body (true).
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    gate: Gate,
) -> bool {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if gate.take() {
            let _ = to.write_all(&buf[..n / 2]).await;
            return true;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
    false
}

/// A TCP balancer on loopback, as a load balancer in front of feederd
/// replicas: each connection goes to the next upstream that accepts it.
pub struct Balancer {
    pub addr: String,
}

impl Balancer {
    pub async fn start(upstreams: Vec<String>) -> Balancer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let next = Arc::new(AtomicU32::new(0));
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let first = next.fetch_add(1, Ordering::Relaxed) as usize;
                let upstreams = upstreams.clone();
                tokio::spawn(async move {
                    for i in 0..upstreams.len() {
                        let upstream = &upstreams[(first + i) % upstreams.len()];
                        if let Ok(mut server) = TcpStream::connect(upstream).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                            return;
                        }
                    }
                });
            }
        });
        Balancer { addr }
    }
}
