//! A worker: one OS thread with its own single-threaded runtime, its own UDP socket and one
//! [`Engine`] that owns whole rooms. Forwarding inside a room never leaves the thread: no lock and
//! no channel per packet.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use str0m::net::Transmit;
use tokio::sync::mpsc;
use tracing::{debug, info, info_span, warn, Instrument};

use signal::protocol::ServerMessage;

use super::handle::{Command, Placement};
use super::udp::MediaSocket;
use crate::core::{Engine, EngineConfig, JoinSpec};

/// Receive batches handled before the worker looks at commands and timers again.
const MAX_BATCHES_PER_WAKE: usize = 16;
/// Commands queued per worker before joins and signals are refused as busy.
pub const COMMAND_QUEUE: usize = 1024;

/// How a worker is set up.
pub struct WorkerSpec {
    /// Worker number (for logs).
    pub index: usize,
    /// The address its socket binds to.
    pub bind: SocketAddr,
    /// The IPs advertised in candidates; the port is the socket's.
    pub candidate_ips: Vec<IpAddr>,
    /// Engine settings (the candidate addresses are filled in from the above).
    pub engine: EngineConfig,
}

/// A running worker.
pub struct Worker {
    /// Its command queue.
    pub commands: mpsc::Sender<Command>,
    /// The port its socket is bound to.
    pub port: u16,
    /// The thread.
    pub thread: JoinHandle<()>,
}

/// Start a worker thread; returns once its socket is bound.
pub fn spawn(spec: WorkerSpec, placement: Arc<Mutex<Placement>>) -> io::Result<Worker> {
    let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let index = spec.index;
    let thread = std::thread::Builder::new()
        .name(format!("sfu-worker-{index}"))
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            rt.block_on(async move {
                let socket = match MediaSocket::bind(spec.bind) {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let port = socket.local_port();
                let mut engine_config = spec.engine;
                engine_config.candidate_addrs = spec
                    .candidate_ips
                    .iter()
                    .map(|ip| SocketAddr::new(*ip, port))
                    .collect();
                let _ = ready_tx.send(Ok(port));
                let span = info_span!("worker", index);
                WorkerLoop {
                    engine: Engine::new(engine_config),
                    socket,
                    commands: rx,
                    sessions: HashMap::new(),
                    placement,
                    out: Vec::with_capacity(1024),
                    kick: Vec::new(),
                }
                .run()
                .instrument(span)
                .await;
            });
        })?;
    let port = ready_rx
        .recv()
        .map_err(|_| io::Error::other("worker thread died while starting"))??;
    Ok(Worker {
        commands: tx,
        port,
        thread,
    })
}

struct WorkerLoop {
    engine: Engine,
    socket: MediaSocket,
    commands: mpsc::Receiver<Command>,
    /// Event queues of the participants on this worker.
    sessions: HashMap<String, mpsc::Sender<ServerMessage>>,
    placement: Arc<Mutex<Placement>>,
    out: Vec<Transmit>,
    /// Participants to remove after delivering signals (queue full or closed).
    kick: Vec<(String, &'static str)>,
}

impl WorkerLoop {
    async fn run(mut self) {
        info!(port = self.socket.local_port(), "worker started");
        loop {
            let deadline = self.engine.poll_timeout();
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                cmd = self.commands.recv() => match cmd {
                    Some(cmd) => self.handle_command(cmd),
                    None => break,
                },
                r = self.socket.readable() => {
                    if let Err(e) = r {
                        warn!("socket: {e}");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    self.receive();
                }
                _ = sleep => self.engine.handle_timeout(Instant::now()),
            }
            self.deliver_signals();
            self.send().await;
        }
        info!("worker stopped");
    }

    fn receive(&mut self) {
        let WorkerLoop { engine, socket, .. } = self;
        let port = socket.local_port();
        let fallback = engine.candidate_addrs()[0];
        for _ in 0..MAX_BATCHES_PER_WAKE {
            let now = Instant::now();
            let r = socket.recv_batch(|d| {
                let destination = d
                    .destination_ip
                    .map_or(fallback, |ip| SocketAddr::new(ip, port));
                engine.handle_datagram(now, d.source, destination, d.data);
            });
            match r {
                Ok(0) => break,
                Ok(_) => engine.flush(now),
                Err(e) => {
                    // ICMP errors from a gone peer surface here; they are not fatal.
                    debug!("recv: {e}");
                    break;
                }
            }
        }
    }

    async fn send(&mut self) {
        while let Some(t) = self.engine.poll_transmit() {
            self.out.push(t);
        }
        if !self.out.is_empty() {
            if let Err(e) = self.socket.send_all(&mut self.out).await {
                warn!("send: {e}");
                self.out.clear();
            }
        }
    }

    fn handle_command(&mut self, cmd: Command) {
        let now = Instant::now();
        match cmd {
            Command::Join {
                id,
                room,
                name,
                events,
                reply,
            } => {
                self.sessions.insert(id.clone(), events);
                let r = self.engine.join(now, JoinSpec::new(id.clone(), room, name));
                if r.is_err() {
                    self.sessions.remove(&id);
                }
                let _ = reply.send(r);
            }
            Command::Signal { id, signal } => self.engine.handle_signal(now, &id, signal),
            Command::Leave { id, reason } => self.engine.leave(now, &id, &reason),
        }
    }

    /// Hand the engine's messages to the participants' queues. A participant whose queue is full
    /// (not reading) or closed is removed.
    fn deliver_signals(&mut self) {
        loop {
            while let Some((id, msg)) = self.engine.poll_signal() {
                let is_left = matches!(msg, ServerMessage::Left { .. });
                if let Some(tx) = self.sessions.get(&id) {
                    match tx.try_send(msg) {
                        Ok(()) => {}
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            self.kick.push((id.clone(), "slow_consumer"))
                        }
                        Err(mpsc::error::TrySendError::Closed(_)) => {
                            self.kick.push((id.clone(), "disconnected"))
                        }
                    }
                }
                if is_left {
                    self.sessions.remove(&id);
                    self.placement.lock().release(&id);
                }
            }
            if self.kick.is_empty() {
                break;
            }
            let now = Instant::now();
            for (id, reason) in std::mem::take(&mut self.kick) {
                self.engine.leave(now, &id, reason);
            }
        }
    }
}
