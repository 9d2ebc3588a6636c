//! The signalling sessions of a worker's participants: each participant's event queue towards
//! its WebSocket, and what happens when that socket drops.
//!
//! A participant whose socket dropped without `leave` is *detached*: it stays in its room (its
//! media keeps flowing), messages for it are held back, and it can be taken up again on a new
//! socket with `resume` and the secret it was given on join, within the grace period. Held
//! messages are delivered in order after `resumed`. A detached participant that does not come
//! back in time, or for whom more messages pile up than a queue holds, leaves.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use signal::protocol::ServerMessage;

use super::handle::EVENT_QUEUE;
use crate::core::LeaveReason;

/// A new resume secret: 128 random bits, base64url.
pub fn new_secret() -> String {
    use base64::Engine as _;
    let bytes: [u8; 16] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

struct Slot {
    tx: mpsc::Sender<ServerMessage>,
    secret: String,
    /// Set while no socket is attached.
    detached: Option<Detached>,
}

struct Detached {
    /// The participant leaves at this time unless it resumes.
    until: Instant,
    /// Messages for it, in order.
    held: VecDeque<ServerMessage>,
}

/// Why a resume was refused. The client is told the same thing either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResumeRefused {
    /// No such participant on this worker (it left, or never was).
    Unknown,
    /// The secret does not match.
    WrongSecret,
}

/// The sessions of one worker. See the module docs.
pub struct Sessions {
    slots: HashMap<String, Slot>,
    grace: Duration,
}

impl Sessions {
    /// No sessions; detached participants may resume within `grace` (zero: never).
    pub fn new(grace: Duration) -> Self {
        Sessions {
            slots: HashMap::new(),
            grace,
        }
    }

    /// The grace period.
    pub fn grace(&self) -> Duration {
        self.grace
    }

    /// A participant joined: its messages go to `tx`.
    pub fn insert(&mut self, id: &str, tx: mpsc::Sender<ServerMessage>, secret: String) {
        let slot = Slot {
            tx,
            secret,
            detached: None,
        };
        self.slots.insert(id.to_owned(), slot);
    }

    /// The participant is gone.
    pub fn remove(&mut self, id: &str) {
        self.slots.remove(id);
    }

    /// Every participant with a session.
    pub fn ids(&self) -> impl Iterator<Item = &String> {
        self.slots.keys()
    }

    /// Hand `msg` to participant `id`. `Err` says the participant must leave, and why: its
    /// queue is full (it does not read), or its socket is gone and nothing can be held for it.
    /// A socket found gone detaches the participant (then `Ok(true)`: newly detached).
    pub fn send(
        &mut self,
        now: Instant,
        id: &str,
        msg: ServerMessage,
    ) -> Result<bool, LeaveReason> {
        let Some(slot) = self.slots.get_mut(id) else {
            return Ok(false);
        };
        if let Some(d) = &mut slot.detached {
            return hold(d, msg).map(|()| false);
        }
        match slot.tx.try_send(msg) {
            Ok(()) => Ok(false),
            Err(mpsc::error::TrySendError::Full(_)) => Err(LeaveReason::SlowConsumer),
            Err(mpsc::error::TrySendError::Closed(msg)) => {
                if self.grace.is_zero() {
                    return Err(LeaveReason::Disconnected);
                }
                let d = slot.detached.insert(Detached {
                    until: now + self.grace,
                    held: VecDeque::new(),
                });
                hold(d, msg).map(|()| true)
            }
        }
    }

    /// The socket of `id` closed without `leave`. `Ok(true)`: newly detached; `Err`: it must
    /// leave now (resuming is off). A socket that closes after a newer one took the session
    /// over (a resume before the old socket was noticed gone) changes nothing: the session's
    /// queue is then the new socket's, still open.
    pub fn detach(&mut self, now: Instant, id: &str) -> Result<bool, LeaveReason> {
        let Some(slot) = self.slots.get_mut(id) else {
            return Ok(false);
        };
        if slot.detached.is_some() || !slot.tx.is_closed() {
            return Ok(false);
        }
        if self.grace.is_zero() {
            return Err(LeaveReason::Disconnected);
        }
        slot.detached = Some(Detached {
            until: now + self.grace,
            held: VecDeque::new(),
        });
        Ok(true)
    }

    /// Take `id` up again on a new socket whose queue is `tx`, if `secret` is its secret:
    /// `resumed` and the held messages go to `tx` first. Whether it was detached (otherwise an
    /// older socket, not yet noticed gone, is replaced).
    pub fn resume(
        &mut self,
        id: &str,
        secret: &str,
        tx: mpsc::Sender<ServerMessage>,
    ) -> Result<bool, ResumeRefused> {
        let slot = self.slots.get_mut(id).ok_or(ResumeRefused::Unknown)?;
        if !same_secret(&slot.secret, secret) {
            return Err(ResumeRefused::WrongSecret);
        }
        let resumed = ServerMessage::Resumed {
            participant_id: id.to_owned(),
        };
        // Held messages are fewer than a queue holds (see `hold`), so they all fit.
        let _ = tx.try_send(resumed);
        let detached = slot.detached.take();
        let was_detached = detached.is_some();
        for msg in detached.into_iter().flat_map(|d| d.held) {
            let _ = tx.try_send(msg);
        }
        // An older socket still attached (the client gave up on it first) is closed without
        // `left`: the participant has not left.
        let _ = slot.tx.try_send(ServerMessage::Superseded);
        slot.tx = tx;
        Ok(was_detached)
    }

    /// Participants whose grace period has passed.
    pub fn expired(&self, now: Instant) -> Vec<String> {
        self.slots
            .iter()
            .filter(|(_, s)| s.detached.as_ref().is_some_and(|d| d.until <= now))
            .map(|(id, _)| id.clone())
            .collect()
    }
}

/// Keep `msg` for a detached participant; one less than a queue holds, so that `resumed` and
/// all of them fit in the new socket's queue.
fn hold(d: &mut Detached, msg: ServerMessage) -> Result<(), LeaveReason> {
    if d.held.len() + 1 >= EVENT_QUEUE {
        return Err(LeaveReason::SlowConsumer);
    }
    d.held.push_back(msg);
    Ok(())
}

/// Compares secrets in time that does not depend on where they differ.
fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pong() -> ServerMessage {
        ServerMessage::Pong
    }

    #[test]
    fn a_dropped_socket_holds_messages_until_resume_delivers_them_in_order() {
        let t0 = Instant::now();
        let mut s = Sessions::new(Duration::from_secs(20));
        let (tx, rx) = mpsc::channel(EVENT_QUEUE);
        s.insert("p", tx, "secret".into());
        drop(rx);
        assert_eq!(s.send(t0, "p", pong()), Ok(true), "newly detached");
        let left = ServerMessage::Left { reason: "x".into() };
        assert_eq!(s.send(t0, "p", left.clone()), Ok(false));
        assert!(s.expired(t0 + Duration::from_secs(19)).is_empty());

        let (tx, _) = mpsc::channel(EVENT_QUEUE);
        assert_eq!(s.resume("p", "wrong", tx), Err(ResumeRefused::WrongSecret));
        let (tx, mut rx) = mpsc::channel(EVENT_QUEUE);
        assert_eq!(s.resume("p", "secret", tx), Ok(true));
        let got: Vec<ServerMessage> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        let resumed = ServerMessage::Resumed {
            participant_id: "p".into(),
        };
        assert_eq!(got, vec![resumed, pong(), left]);
        assert!(s.expired(t0 + Duration::from_secs(60)).is_empty());
    }

    #[test]
    fn the_grace_period_ends_and_a_flood_of_held_messages_ends_it_early() {
        let t0 = Instant::now();
        let mut s = Sessions::new(Duration::from_secs(20));
        let (tx, rx) = mpsc::channel(EVENT_QUEUE);
        s.insert("p", tx, "k".into());
        drop(rx);
        assert_eq!(s.detach(t0, "p"), Ok(true));
        assert_eq!(s.detach(t0, "p"), Ok(false), "once");
        assert_eq!(
            s.expired(t0 + Duration::from_secs(20)),
            vec!["p".to_string()]
        );
        let held = (0..EVENT_QUEUE).map(|_| s.send(t0, "p", pong()));
        assert_eq!(
            held.filter(|r| r.is_err()).count(),
            1,
            "the last one does not fit"
        );
        assert_eq!(
            s.resume("nobody", "k", mpsc::channel(1).0),
            Err(ResumeRefused::Unknown)
        );
    }

    #[test]
    fn without_a_grace_period_a_dropped_socket_leaves() {
        let t0 = Instant::now();
        let mut s = Sessions::new(Duration::ZERO);
        let (tx, rx) = mpsc::channel(4);
        s.insert("p", tx, "k".into());
        drop(rx);
        assert_eq!(s.detach(t0, "p"), Err(LeaveReason::Disconnected));
        assert_eq!(s.send(t0, "p", pong()), Err(LeaveReason::Disconnected));
    }

    #[test]
    fn the_close_of_a_socket_a_resume_replaced_detaches_nothing() {
        let t0 = Instant::now();
        let mut s = Sessions::new(Duration::from_secs(20));
        let (old_tx, mut old_rx) = mpsc::channel(EVENT_QUEUE);
        s.insert("p", old_tx, "k".into());
        // The client gave up on a socket the server still thinks alive, and resumed on a new one.
        let (tx, mut rx) = mpsc::channel(EVENT_QUEUE);
        assert_eq!(s.resume("p", "k", tx), Ok(false), "was not detached");
        assert_eq!(
            old_rx.try_recv(),
            Ok(ServerMessage::Superseded),
            "told, not `left`"
        );
        drop(old_rx);
        assert_eq!(s.detach(t0, "p"), Ok(false), "the old socket's close");
        assert_eq!(s.send(t0, "p", pong()), Ok(false));
        let got: Vec<ServerMessage> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        assert_eq!(got.len(), 2, "resumed, then the pong: {got:?}");
        assert!(s.expired(t0 + Duration::from_secs(60)).is_empty());
    }

    #[test]
    fn secrets_are_long_and_compare_exactly() {
        let a = new_secret();
        assert_eq!(a.len(), 22);
        assert_ne!(a, new_secret());
        assert!(same_secret(&a, &a.clone()));
        assert!(!same_secret(&a, &a[..21]));
    }
}
