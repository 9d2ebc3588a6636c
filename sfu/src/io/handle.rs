//! The cloneable handle the signalling side talks to: it places rooms on workers and routes each
//! participant's commands to the worker that owns its room.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};

use signal::protocol::{
    ErrorCode, IceServer, ParticipantInfo, ServerMessage, SignalError, TrackInfo,
};
use signal::webhook::{EventKind, WebhookEvent};
use signal::{ClientSignal, JoinRequest, MediaBackend, ResumeRequest, Session};

use super::cluster::{Cluster, Place};
use super::relay::Relay;
use super::rooms::Unlink;
pub use super::rooms::{Placement, RoomDefaults};
use super::turn::TurnConfig;
use super::webhook::Webhooks;
use crate::core::{JoinSpec, LeaveReason, ShardMessage, VideoCodecs};

/// Messages a participant's event queue holds before the participant is considered stuck.
///
/// Sized by what another participant can legally make for it in a burst, so that only a client
/// that stops reading ever fills it: ten offers (the offer burst) of eight tracks each, published
/// then unpublished (160 track events), a hundred mutes (the message burst) and the room's own
/// joins, leaves and speaker changes. The queue allocates as it fills, not up front.
pub const EVENT_QUEUE: usize = 1024;

/// A command for a worker.
#[derive(Debug)]
pub enum Command {
    /// Admit a participant.
    Join {
        /// Who, and what it may do (the participant id is chosen by the handle).
        spec: JoinSpec,
        /// The room's metadata, sent to the participant after `joined` when not empty.
        room_metadata: String,
        /// STUN/TURN servers for its `joined` message.
        ice_servers: Vec<IceServer>,
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
    /// A participant's socket closed without `leave`: it is detached (or leaves, when resuming
    /// is off).
    Detach {
        /// Participant id.
        id: String,
    },
    /// A new socket takes up a participant.
    Resume {
        /// Participant id.
        id: String,
        /// The secret from its `joined`.
        secret: String,
        /// Where its messages go from now on.
        events: mpsc::Sender<ServerMessage>,
        /// `resume_failed` when there is no such session or the secret is wrong.
        reply: oneshot::Sender<Result<(), SignalError>>,
    },
    /// A participant leaves.
    Leave {
        /// Participant id.
        id: String,
        /// Why.
        reason: LeaveReason,
    },
    /// Everyone in a room leaves with `reason`. Replies once they are out.
    CloseRoom {
        /// Room name.
        room: String,
        /// Why ([`LeaveReason::RoomDeleted`]).
        reason: LeaveReason,
        /// Answered when done.
        reply: oneshot::Sender<()>,
    },
    /// The participants of a room, with their tracks.
    ListParticipants {
        /// Room name.
        room: String,
        /// The answer.
        reply: oneshot::Sender<Vec<ParticipantInfo>>,
    },
    /// One participant leaves on the operator's word.
    RemoveParticipant {
        /// Participant id.
        id: String,
        /// Why ([`LeaveReason::Removed`]).
        reason: LeaveReason,
        /// `not_found` if it is not (or no longer) there.
        reply: oneshot::Sender<Result<(), SignalError>>,
    },
    /// Mute or unmute a published track.
    MuteTrack {
        /// Publisher id.
        id: String,
        /// Track id.
        track_id: String,
        /// Muted or not.
        muted: bool,
        /// The track as it is now, or `not_found`.
        reply: oneshot::Sender<Result<TrackInfo, SignalError>>,
    },
    /// Change a participant's name and/or metadata.
    UpdateParticipant {
        /// Participant id.
        id: String,
        /// New name.
        name: Option<String>,
        /// New metadata.
        metadata: Option<String>,
        /// The participant as it is now, or `not_found`.
        reply: oneshot::Sender<Result<ParticipantInfo, SignalError>>,
    },
    /// Tell every participant of the worker that the server is shutting down.
    ShuttingDown {
        /// Seconds until they are removed.
        drain_seconds: u32,
    },
    /// Every participant of the worker leaves with `reason`. Replies once they are out.
    RemoveAll {
        /// Why ([`LeaveReason::ServerShutdown`]).
        reason: LeaveReason,
        /// Answered when done.
        reply: oneshot::Sender<()>,
    },
    /// The worker shares `room` with worker `peer` from now on (see `core::shard`).
    LinkRoom {
        /// Room name.
        room: String,
        /// The other worker.
        peer: usize,
    },
    /// The worker no longer shares `room` with worker `peer` (it has nobody left in it).
    UnlinkRoom {
        /// Room name.
        room: String,
        /// The other worker.
        peer: usize,
    },
    /// What another worker sharing a room has to say about it: events, packets, feedback.
    Shard {
        /// The sending worker.
        from: usize,
        /// The message.
        msg: ShardMessage,
    },
    /// A room's settings changed.
    UpdateRoom {
        /// Room name.
        room: String,
        /// The new metadata, to tell everyone in the room.
        metadata: Option<String>,
        /// The new video codec policy, for video published from now on.
        video_codecs: Option<VideoCodecs>,
    },
}

/// The media side as the signalling router sees it: [`MediaBackend`] for WebSocket sessions,
/// [`RoomService`](signal::RoomService) for the REST API (in `service.rs`).
#[derive(Clone)]
pub struct SfuHandle {
    pub(super) workers: Vec<mpsc::Sender<Command>>,
    pub(super) placement: Arc<Mutex<Placement>>,
    pub(super) webhooks: Webhooks,
    /// STUN/TURN servers handed to joining clients.
    pub(super) turn: Arc<TurnConfig>,
    /// This node's part in a cluster, if it is in one.
    pub(super) cluster: Option<Arc<Cluster>>,
    /// The links to the other nodes serving its rooms, when rooms may span nodes.
    pub(super) relay: Option<Arc<Relay>>,
}

impl SfuHandle {
    /// A handle over the command queues of the workers, sharing their placement table. Emits no
    /// webhooks until [`SfuHandle::with_webhooks`].
    pub fn new(workers: Vec<mpsc::Sender<Command>>, placement: Arc<Mutex<Placement>>) -> Self {
        SfuHandle {
            workers,
            placement,
            webhooks: Webhooks::disabled(),
            turn: Arc::new(TurnConfig::default()),
            cluster: None,
            relay: None,
        }
    }

    /// Rooms may span nodes: joins of a room served elsewhere too open links to those nodes.
    pub fn with_relay(mut self, relay: Arc<Relay>) -> Self {
        self.relay = Some(relay);
        self
    }

    /// Rooms are placed through `cluster`: joins of rooms another node owns are redirected.
    pub fn with_cluster(mut self, cluster: Arc<Cluster>) -> Self {
        self.cluster = Some(cluster);
        self
    }

    /// The relay between nodes, when rooms may span nodes.
    pub fn relay(&self) -> Option<&Arc<Relay>> {
        self.relay.as_ref()
    }

    /// The cluster this node is in, if any.
    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.cluster.as_ref()
    }

    /// Joining clients get these STUN/TURN servers, TURN with time-limited credentials.
    pub fn with_turn(mut self, turn: TurnConfig) -> Self {
        self.turn = Arc::new(turn);
        self
    }

    /// Room events (created, closed) go to `webhooks`.
    pub fn with_webhooks(mut self, webhooks: Webhooks) -> Self {
        self.webhooks = webhooks;
        self
    }

    /// Whether `room` is on this node now.
    pub fn has_room(&self, room: &str) -> bool {
        self.placement.lock().has_room(room)
    }

    /// Participants per worker.
    pub fn load(&self) -> Vec<usize> {
        self.placement.lock().load().to_vec()
    }

    /// Whether a join could be admitted now (what `/readyz` reports): in a cluster, only while
    /// its shared store answers.
    pub fn accepting(&self) -> bool {
        self.placement.lock().accepting() && self.cluster.as_ref().is_none_or(|c| c.healthy())
    }

    /// Shuts the media side down: refuses joins from now on, tells every participant
    /// (`shutting_down`), waits until they have all left or `drain` has passed, then removes the
    /// rest with reason `server_shutdown`.
    pub async fn shut_down(&self, drain: Duration) {
        self.placement.lock().start_draining();
        if let Some(cluster) = &self.cluster {
            // The registry says so at once: no new rooms come here.
            cluster.refresh().await;
        }
        let drain_seconds = u32::try_from(drain.as_secs()).unwrap_or(u32::MAX);
        for w in &self.workers {
            let _ = w.send(Command::ShuttingDown { drain_seconds }).await;
        }
        let deadline = tokio::time::Instant::now() + drain;
        let mut left = self.placement.lock().total();
        while left > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100).min(drain)).await;
            left = self.placement.lock().total();
        }
        tracing::info!(remaining = left, "drain over");
        self.remove_all(LeaveReason::ServerShutdown, Duration::from_secs(5))
            .await;
    }

    /// Removes every participant with `left` `{reason}`, waiting at most `wait` for each
    /// worker to take the command and to confirm it.
    pub async fn remove_all(&self, reason: LeaveReason, wait: Duration) {
        let mut done = Vec::new();
        for w in &self.workers {
            let (tx, rx) = oneshot::channel();
            let cmd = Command::RemoveAll { reason, reply: tx };
            if matches!(tokio::time::timeout(wait, w.send(cmd)).await, Ok(Ok(()))) {
                done.push(rx);
            }
        }
        for rx in done {
            let _ = tokio::time::timeout(wait, rx).await;
        }
    }

    /// Closes the rooms that have been empty for their `empty_timeout`, with a `room_finished`
    /// webhook each. Returns how many.
    pub fn close_expired_rooms(&self, now: Instant) -> usize {
        let closed = self.placement.lock().close_expired(now);
        for (room, relayed) in &closed {
            tracing::info!(room = %room.name, "room closed: empty");
            // A relayed part: the room goes on on its owner, which tells when it finishes.
            if !relayed {
                self.webhooks.emit(
                    WebhookEvent::new(EventKind::RoomFinished, &room.name).reason("empty_timeout"),
                );
            }
        }
        closed.len()
    }

    /// Runs [`SfuHandle::close_expired_rooms`] every `period` on the current tokio runtime.
    pub fn spawn_room_sweeper(&self, period: Duration) -> tokio::task::JoinHandle<()> {
        let handle = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                handle.close_expired_rooms(Instant::now());
            }
        })
    }
}

/// Worker `worker` gets the first participant of `room`, which is on workers `others` too: each
/// pair shares the room from now on. Returns false if a queue was full.
fn send_links(
    workers: &[mpsc::Sender<Command>],
    room: &str,
    worker: usize,
    others: &[usize],
) -> bool {
    others.iter().all(|&peer| {
        let to_new = Command::LinkRoom {
            room: room.to_owned(),
            peer,
        };
        let to_peer = Command::LinkRoom {
            room: room.to_owned(),
            peer: worker,
        };
        workers[worker].try_send(to_new).is_ok() && workers[peer].try_send(to_peer).is_ok()
    })
}

/// Queue the unlinks a release calls for. Call it with the placement locked. A full queue drops
/// the unlink: the workers then go on sharing a room where one has nobody, which costs control
/// messages only (no packets are handed to a worker without subscribers).
pub(super) fn send_unlinks(workers: &[mpsc::Sender<Command>], u: &Unlink) {
    for &peer in &u.others {
        for (to, other) in [(u.worker, peer), (peer, u.worker)] {
            let cmd = Command::UnlinkRoom {
                room: u.room.clone(),
                peer: other,
            };
            if workers[to].try_send(cmd).is_err() {
                tracing::warn!(room = %u.room, worker = to, "room unlink not queued: worker busy");
            }
        }
    }
}

pub(super) fn busy() -> SignalError {
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
        self.join_counted(req, None).await
    }

    async fn join_player(
        &self,
        req: JoinRequest,
        publisher: String,
    ) -> Result<Session, SignalError> {
        self.join_counted(req, Some(publisher)).await
    }

    fn signal(&self, participant_id: &str, signal: ClientSignal) -> Result<(), SignalError> {
        self.route_signal(participant_id, signal)
    }

    async fn room_elsewhere(&self, room: &str) -> Option<String> {
        let cluster = self.cluster.as_ref()?;
        if self.placement.lock().has_room(room) {
            return None;
        }
        cluster.elsewhere(room).await
    }

    fn leave(&self, participant_id: &str, reason: &str) {
        self.route_leave(participant_id, reason);
    }

    fn detach(&self, participant_id: &str) {
        let Some(worker) = self.placement.lock().worker_of(participant_id) else {
            return;
        };
        let cmd = Command::Detach {
            id: participant_id.to_string(),
        };
        if self.workers[worker].try_send(cmd).is_err() {
            // The worker is swamped; the socket's queue is closed, so the participant is
            // detached when the next message for it finds it gone.
            tracing::warn!(
                participant = participant_id,
                "detach not queued: worker busy"
            );
        }
    }

    async fn resume(&self, req: ResumeRequest) -> Result<Session, SignalError> {
        let refused = || SignalError::new(ErrorCode::ResumeFailed, "no such session; join again");
        let worker = self
            .placement
            .lock()
            .worker_of(&req.participant_id)
            .ok_or_else(refused)?;
        let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
        let (reply_tx, reply_rx) = oneshot::channel();
        let cmd = Command::Resume {
            id: req.participant_id.clone(),
            secret: req.secret,
            events: events_tx,
            reply: reply_tx,
        };
        self.workers[worker].try_send(cmd).map_err(|_| busy())?;
        let result = reply_rx.await.unwrap_or_else(|_| Err(busy()));
        let outcome = if result.is_ok() { "ok" } else { "refused" };
        metrics::counter!("sfu_resumes_total", "result" => outcome).increment(1);
        result.map(|()| Session {
            participant_id: req.participant_id,
            events: events_rx,
        })
    }
}

impl SfuHandle {
    /// A join, measured and counted in the metrics.
    async fn join_counted(
        &self,
        req: JoinRequest,
        plays: Option<String>,
    ) -> Result<Session, SignalError> {
        let started = Instant::now();
        let r = self.admit(req, plays).await;
        let result = match &r {
            Ok(_) => {
                metrics::histogram!("sfu_join_duration_seconds")
                    .record(started.elapsed().as_secs_f64());
                "ok"
            }
            Err(e) => e.code.as_str(),
        };
        metrics::counter!("sfu_joins_total", "result" => result).increment(1);
        r
    }

    async fn admit(&self, req: JoinRequest, plays: Option<String>) -> Result<Session, SignalError> {
        if let Some(cluster) = &self.cluster {
            let here = self.placement.lock().has_room(&req.room);
            if let Place::There { node, url } = cluster
                .place(&req.room, req.region.as_deref(), here)
                .await?
            {
                tracing::debug!(room = %req.room, %node, "join redirected to the room's node");
                return Err(SignalError::redirect(url));
            }
            // The room's first participant here, while another node owns it: the room takes
            // the owner's settings (limit, metadata, codecs) before anyone joins it here.
            if let Some(relay) = self.relay.as_ref().filter(|_| !here) {
                if let Some(info) = relay.room_settings(&req.room).await {
                    let create = signal::rest::dto::CreateRoom {
                        name: req.room.clone(),
                        max_participants: Some(info.max_participants),
                        empty_timeout: Some(info.empty_timeout),
                        metadata: Some(info.metadata),
                        video_codecs: Some(info.video_codecs),
                        region: None,
                    };
                    // A join that made the room meanwhile keeps it as it is.
                    let _ = self
                        .placement
                        .lock()
                        .create_relayed(&create, Instant::now());
                }
            }
        }
        let id = new_participant_id();
        let reservation = {
            // Links are queued under the placement lock, like unlinks (see
            // `send_unlinks`), so that every worker hears of them in the order they happened.
            let mut p = self.placement.lock();
            // A player and its publisher go to one worker.
            let now = Instant::now();
            let r = p.reserve_near(
                &id,
                &req.room,
                plays.as_deref(),
                req.identity.as_deref(),
                now,
            )?;
            if !send_links(&self.workers, &req.room, r.worker, &r.link) {
                if let Some(u) = p.release(&id, Instant::now()) {
                    send_unlinks(&self.workers, &u);
                }
                return Err(busy());
            }
            // One session per identity and room, as on one worker: an older one on another
            // worker of the room leaves.
            if let Some(identity) = &req.identity {
                for (older, worker) in p.claim_identity(&id, identity) {
                    let cmd = Command::Leave {
                        id: older,
                        reason: LeaveReason::DuplicateIdentity,
                    };
                    if self.workers[worker].try_send(cmd).is_err() {
                        tracing::warn!(worker, "duplicate-identity leave not queued: worker busy");
                    }
                }
            }
            r
        };
        if let Some(relay) = &self.relay {
            relay.ensure(&req.room);
        }
        if let Some(room) = &reservation.created {
            tracing::info!(room = %room.name, "room created by a join");
            self.webhooks
                .emit(WebhookEvent::new(EventKind::RoomStarted, &room.name));
        }
        let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
        let (reply_tx, reply_rx) = oneshot::channel();
        let mut spec = JoinSpec::new(id.clone(), req.room, req.name);
        spec.identity = req.identity;
        spec.metadata = req.metadata;
        spec.can_publish = req.grants.publish;
        spec.can_subscribe = req.grants.subscribe;
        spec.can_publish_data = req.grants.publish_data;
        spec.video_codecs = reservation.video_codecs;
        spec.plays = plays;
        let who = spec.identity.clone().unwrap_or_else(|| id.clone());
        let ice_servers = self.turn.ice_servers(&who, std::time::SystemTime::now());
        let cmd = Command::Join {
            spec,
            room_metadata: reservation.metadata,
            ice_servers,
            events: events_tx,
            reply: reply_tx,
        };
        let result = match self.workers[reservation.worker].try_send(cmd) {
            Ok(()) => reply_rx.await.unwrap_or_else(|_| Err(busy())),
            Err(_) => Err(busy()),
        };
        match result {
            Ok(()) => Ok(Session {
                participant_id: id,
                events: events_rx,
            }),
            Err(e) => {
                let mut p = self.placement.lock();
                if let Some(u) = p.release(&id, Instant::now()) {
                    send_unlinks(&self.workers, &u);
                }
                Err(e)
            }
        }
    }

    fn route_signal(&self, participant_id: &str, signal: ClientSignal) -> Result<(), SignalError> {
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

    fn route_leave(&self, participant_id: &str, reason: &str) {
        let Some(worker) = self.placement.lock().worker_of(participant_id) else {
            return;
        };
        let cmd = Command::Leave {
            id: participant_id.to_string(),
            reason: super::wire::leave_reason(reason),
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
