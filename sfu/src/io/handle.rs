//! The cloneable handle the signalling side talks to: it places rooms on workers and routes each
//! participant's commands to the worker that owns its room.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};

use signal::protocol::{ErrorCode, ServerMessage, SignalError};
use signal::{ClientSignal, JoinRequest, MediaBackend, Session};

/// Messages a participant's event queue holds before the participant is considered stuck.
pub const EVENT_QUEUE: usize = 256;

/// A command for a worker.
#[derive(Debug)]
pub enum Command {
    /// Admit a participant.
    Join {
        /// The participant id chosen by the handle.
        id: String,
        /// Room name.
        room: String,
        /// Display name.
        name: String,
        /// Where the participant's messages go.
        events: mpsc::Sender<ServerMessage>,
        /// The outcome.
        reply: oneshot::Sender<Result<(), SignalError>>,
    },
    /// A signal from a participant.
    Signal {
        /// Participant id.
        id: String,
        /// The signal.
        signal: ClientSignal,
    },
    /// A participant leaves.
    Leave {
        /// Participant id.
        id: String,
        /// Why.
        reason: String,
    },
}

/// Where rooms and participants live. Touched on join and leave only, never per packet.
#[derive(Debug, Default)]
pub struct Placement {
    rooms: HashMap<String, RoomPlace>,
    participants: HashMap<String, (usize, String)>,
    load: Vec<usize>,
}

#[derive(Debug)]
struct RoomPlace {
    worker: usize,
    participants: usize,
}

impl Placement {
    /// Placement over `workers` workers.
    pub fn new(workers: usize) -> Self {
        Placement {
            load: vec![0; workers],
            ..Default::default()
        }
    }

    /// Reserve a place for participant `id` in `room`: the room's worker, or for a new room the
    /// least loaded worker. Returns the worker.
    pub fn reserve(&mut self, id: &str, room: &str) -> usize {
        let worker = match self.rooms.get(room) {
            Some(r) => r.worker,
            None => {
                // `load` is never empty: the server starts at least one worker.
                let w = (0..self.load.len())
                    .min_by_key(|w| self.load[*w])
                    .unwrap_or(0);
                self.rooms.insert(
                    room.to_string(),
                    RoomPlace {
                        worker: w,
                        participants: 0,
                    },
                );
                w
            }
        };
        if let Some(r) = self.rooms.get_mut(room) {
            r.participants += 1;
        }
        self.load[worker] += 1;
        self.participants
            .insert(id.to_string(), (worker, room.to_string()));
        worker
    }

    /// Participant `id` is gone (or never made it in).
    pub fn release(&mut self, id: &str) {
        let Some((worker, room)) = self.participants.remove(id) else {
            return;
        };
        self.load[worker] = self.load[worker].saturating_sub(1);
        if let Some(r) = self.rooms.get_mut(&room) {
            r.participants -= 1;
            if r.participants == 0 {
                self.rooms.remove(&room);
            }
        }
    }

    /// The worker of participant `id`.
    pub fn worker_of(&self, id: &str) -> Option<usize> {
        self.participants.get(id).map(|(w, _)| *w)
    }

    /// Participants per worker.
    pub fn load(&self) -> &[usize] {
        &self.load
    }
}

/// The media side as the signalling router sees it.
#[derive(Clone)]
pub struct SfuHandle {
    workers: Vec<mpsc::Sender<Command>>,
    placement: Arc<Mutex<Placement>>,
}

impl SfuHandle {
    /// A handle over the command queues of the workers, sharing their placement table.
    pub fn new(workers: Vec<mpsc::Sender<Command>>, placement: Arc<Mutex<Placement>>) -> Self {
        SfuHandle { workers, placement }
    }

    /// Participants per worker.
    pub fn load(&self) -> Vec<usize> {
        self.placement.lock().load().to_vec()
    }
}

fn busy() -> SignalError {
    SignalError::new(ErrorCode::ServerBusy, "the media server is overloaded")
}

/// A participant id: 12 random characters out of a URL-safe alphabet.
fn new_participant_id() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    (0..12)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
}

impl MediaBackend for SfuHandle {
    async fn join(&self, req: JoinRequest) -> Result<Session, SignalError> {
        let id = new_participant_id();
        let worker = self.placement.lock().reserve(&id, &req.room);
        let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
        let (reply_tx, reply_rx) = oneshot::channel();
        let cmd = Command::Join {
            id: id.clone(),
            room: req.room,
            name: req.name,
            events: events_tx,
            reply: reply_tx,
        };
        let result = match self.workers[worker].try_send(cmd) {
            Ok(()) => reply_rx.await.unwrap_or_else(|_| Err(busy())),
            Err(_) => Err(busy()),
        };
        match result {
            Ok(()) => Ok(Session {
                participant_id: id,
                events: events_rx,
            }),
            Err(e) => {
                self.placement.lock().release(&id);
                Err(e)
            }
        }
    }

    fn signal(&self, participant_id: &str, signal: ClientSignal) -> Result<(), SignalError> {
        let worker = self
            .placement
            .lock()
            .worker_of(participant_id)
            .ok_or_else(|| SignalError::new(ErrorCode::NotJoined, "not in a room"))?;
        self.workers[worker]
            .try_send(Command::Signal {
                id: participant_id.to_string(),
                signal,
            })
            .map_err(|_| busy())
    }

    fn leave(&self, participant_id: &str, reason: &str) {
        let Some(worker) = self.placement.lock().worker_of(participant_id) else {
            return;
        };
        let cmd = Command::Leave {
            id: participant_id.to_string(),
            reason: reason.to_string(),
        };
        if self.workers[worker].try_send(cmd).is_err() {
            // The worker is swamped; its liveness check removes the participant shortly.
            tracing::warn!(
                participant = participant_id,
                "leave not queued: worker busy"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rooms_stay_on_one_worker_and_new_rooms_go_to_the_least_loaded() {
        let mut p = Placement::new(2);
        assert_eq!(p.reserve("a", "r1"), 0);
        assert_eq!(p.reserve("b", "r1"), 0);
        assert_eq!(p.reserve("c", "r2"), 1);
        assert_eq!(p.reserve("d", "r3"), 1);
        assert_eq!(p.load(), &[2, 2]);
        p.release("a");
        p.release("b");
        assert_eq!(p.load(), &[0, 2]);
        // r1 is gone; a new r1 goes to the least loaded worker.
        assert_eq!(p.reserve("e", "r1"), 0);
        assert_eq!(p.worker_of("d"), Some(1));
        assert_eq!(p.worker_of("a"), None);
        p.release("zzz");
    }
}
