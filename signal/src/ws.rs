//! One WebSocket session: a single task reads the client's frames, forwards the media side's events
//! and keeps the session's deadlines.
//!
//! A session goes `AwaitingJoin` -> `Joined` -> `Leaving` -> closed, and may close from any phase.
//! Each turn of the loop waits for the first of: a client frame, a session event, the earliest
//! deadline. Client frames are parsed once ([`parse_text`]) and refused with an error message when
//! they are bad; the socket goes on. Nothing here queues: a slow client slows its own session, and
//! a client that stops reading is dropped after [`RouterConfig::send_timeout`]. While the media side
//! handles a `join` (at most [`RouterConfig::backend_timeout`]) the session reads nothing else.
//!
//! Logs carry the room and participant id, sizes of SDPs and candidates, and error codes; never
//! tokens, SDP text or the text of refused messages.

use std::ops::ControlFlow::{self, Break, Continue};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use tokio::sync::mpsc;
use tokio::time::{sleep_until, timeout, Instant};
use tracing::{debug, info, warn};

use crate::auth::{Grants, KeySet};
use crate::limits::{IpPermit, MessageRate, RateVerdict};
use crate::protocol::{
    validate_display_name, validate_region, validate_room_name, ClientMessage, ErrorCode,
    ServerMessage, SignalError, MAX_MESSAGE_BYTES, PROTOCOL_VERSION,
};
use crate::{ClientSignal, JoinRequest, MediaBackend, ResumeRequest, RouterConfig, Session};

/// How much of a parser message goes back to the client.
const MAX_DETAIL_CHARS: usize = 200;

/// How long closing may take: sending the close frame, then reading until the client's reply.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// WebSocket close code: normal closure.
const CLOSE_NORMAL: u16 = 1000;
/// WebSocket close code: policy violation (a deadline missed, too many refused joins, a flood).
const CLOSE_POLICY: u16 = 1008;
/// WebSocket close code: protocol error (a frame that breaks RFC 6455).
const CLOSE_PROTOCOL: u16 = 1002;
/// WebSocket close code: invalid payload data (a text message that is not UTF-8).
const CLOSE_INVALID_PAYLOAD: u16 = 1007;
/// WebSocket close code: message too big (above [`RouterConfig::max_frame_bytes`]).
const CLOSE_TOO_BIG: u16 = 1009;
/// WebSocket close code (application range): a `resume` on another socket took the session.
const CLOSE_SUPERSEDED: u16 = 4000;

/// Runs one session to its end. Never panics on client input. `pending` is the socket's slot
/// among those that have not joined; it is given back at the join.
pub(crate) async fn run<B: MediaBackend>(
    socket: WebSocket,
    backend: Arc<B>,
    config: RouterConfig,
    pending: IpPermit,
) {
    let now = Instant::now();
    let mut conn = Conn {
        phase: Phase::AwaitingJoin {
            deadline: now + config.join_timeout,
        },
        last_frame: now,
        next_ping: now + config.ping_interval,
        rate: MessageRate::new(config.message_rate, config.message_burst, now),
        refused_joins: 0,
        pending: Some(pending),
        socket,
        backend,
        config,
    };
    debug!("socket open");
    let end = conn.drive().await;
    conn.finish(end).await;
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The client closed the socket, or it failed.
    Gone,
    /// No successful `join` within [`RouterConfig::join_timeout`].
    JoinTimeout,
    /// No frame from the client within [`RouterConfig::idle_timeout`].
    Idle,
    /// A send did not complete within [`RouterConfig::send_timeout`].
    SendStalled,
    /// The participant left the room and the client was sent `left`.
    Left,
    /// A `resume` on another socket took the participant over.
    Superseded,
    /// The `join` was sent to another node of the cluster.
    Redirected,
    /// [`RouterConfig::max_join_attempts`] joins were refused.
    TooManyJoins,
    /// The client kept sending far above [`RouterConfig::message_rate`].
    Flood,
    /// A text message that is not UTF-8.
    InvalidPayload,
    /// A frame that breaks the WebSocket protocol.
    ProtocolError,
    /// A frame or message above [`RouterConfig::max_frame_bytes`].
    TooBig,
}

impl End {
    fn as_str(self) -> &'static str {
        match self {
            End::Gone => "gone",
            End::JoinTimeout => "join_timeout",
            End::Idle => "idle",
            End::SendStalled => "send_stalled",
            End::Left => "left",
            End::Superseded => "superseded",
            End::Redirected => "redirected",
            End::TooManyJoins => "too_many_joins",
            End::Flood => "flood",
            End::InvalidPayload => "invalid_payload",
            End::ProtocolError => "protocol_error",
            End::TooBig => "too_big",
        }
    }

    /// Why reading from the socket failed: a client that broke the rules gets a close frame
    /// saying which; a connection that failed underneath is just gone.
    fn from_read_error(e: axum::Error) -> End {
        let Ok(e) = e.into_inner().downcast::<tungstenite::Error>() else {
            return End::Gone;
        };
        match *e {
            tungstenite::Error::Utf8(_) => End::InvalidPayload,
            tungstenite::Error::Capacity(_) => End::TooBig,
            tungstenite::Error::Protocol(
                tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
            ) => End::Gone,
            tungstenite::Error::Protocol(_) => End::ProtocolError,
            _ => End::Gone,
        }
    }

    /// The close frame to send, if the socket can still take one.
    fn close_frame(self) -> Option<CloseFrame> {
        let (code, reason) = match self {
            End::Gone | End::SendStalled => return None,
            End::JoinTimeout => (CLOSE_POLICY, "join timeout"),
            End::Idle => (CLOSE_POLICY, "idle timeout"),
            End::Left => (CLOSE_NORMAL, "left"),
            End::Superseded => (CLOSE_SUPERSEDED, "resumed on another connection"),
            End::Redirected => (CLOSE_NORMAL, "redirected"),
            End::TooManyJoins => (CLOSE_POLICY, "too many joins"),
            End::Flood => (CLOSE_POLICY, "message rate exceeded"),
            End::InvalidPayload => (CLOSE_INVALID_PAYLOAD, "invalid utf-8"),
            End::ProtocolError => (CLOSE_PROTOCOL, "protocol error"),
            End::TooBig => (CLOSE_TOO_BIG, "message too big"),
        };
        Some(CloseFrame {
            code,
            reason: Utf8Bytes::from_static(reason),
        })
    }
}

/// Something the session waits for besides frames and events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wake {
    /// Send a WebSocket ping.
    Ping,
    /// The client has been silent for too long.
    IdleTimeout,
    /// The client has not joined in time.
    JoinTimeout,
    /// The media side did not confirm a `leave` in time.
    LeaveTimeout,
}

/// The first of the given deadlines; on a tie, the one listed first.
fn earliest<T>(
    first: (Instant, T),
    rest: impl IntoIterator<Item = Option<(Instant, T)>>,
) -> (Instant, T) {
    rest.into_iter().flatten().fold(
        first,
        |best, next| if next.0 < best.0 { next } else { best },
    )
}

/// A joined participant. Dropping it tells the media side that the participant disconnected, so
/// the media side hears exactly one `leave` however the session ends.
struct Member<B: MediaBackend> {
    backend: Arc<B>,
    id: String,
    /// Set once the media side knows the participant is gone.
    gone: bool,
}

impl<B: MediaBackend> Member<B> {
    /// The client asked to leave.
    fn leave(mut self) {
        self.gone = true;
        self.backend.leave(&self.id, "left");
    }

    /// The media side ended the session itself (`left` event or a closed event channel).
    fn ended_by_backend(mut self) {
        self.gone = true;
    }
}

impl<B: MediaBackend> Drop for Member<B> {
    /// The socket ended without `leave`: the participant may come back with `resume`.
    fn drop(&mut self) {
        if !self.gone {
            self.backend.detach(&self.id);
        }
    }
}

enum Phase<B: MediaBackend> {
    /// No participant yet. Only `join` and `ping` are accepted.
    AwaitingJoin { deadline: Instant },
    /// In the room; events are forwarded. `events` is declared (so dropped) before `member`: the
    /// media side, told by the member's drop that the socket is gone, finds its queue closed.
    Joined {
        events: mpsc::Receiver<ServerMessage>,
        member: Member<B>,
    },
    /// The client said `leave`; events are forwarded until the media side's `left`.
    Leaving {
        events: mpsc::Receiver<ServerMessage>,
        deadline: Instant,
    },
    /// The session is over.
    Done,
}

/// The phase without its data, to dispatch client messages on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    NotJoined,
    Joined,
    Leaving,
}

impl<B: MediaBackend> Phase<B> {
    fn stage(&self) -> Stage {
        match self {
            Phase::AwaitingJoin { .. } | Phase::Done => Stage::NotJoined,
            Phase::Joined { .. } => Stage::Joined,
            Phase::Leaving { .. } => Stage::Leaving,
        }
    }

    /// The next session event, or never when the phase has no event channel.
    async fn next_event(&mut self) -> Option<ServerMessage> {
        match self {
            Phase::Joined { events, .. } | Phase::Leaving { events, .. } => events.recv().await,
            Phase::AwaitingJoin { .. } | Phase::Done => std::future::pending().await,
        }
    }

    /// Ends the session on the media side's word: no `leave` is sent for it.
    fn end_by_backend(&mut self) {
        if let Phase::Joined { member, .. } = std::mem::replace(self, Phase::Done) {
            member.ended_by_backend();
        }
    }
}

/// A client frame, as the session sees it.
#[derive(Debug)]
enum Frame {
    Message(ClientMessage),
    /// A ping or pong: it only proves the client is alive.
    Control,
    Close,
    Refused(SignalError),
}

fn read_frame(frame: Message) -> Frame {
    match frame {
        Message::Text(text) => match parse_text(text.as_str()) {
            Ok(msg) => Frame::Message(msg),
            Err(e) => Frame::Refused(e),
        },
        Message::Binary(_) => Frame::Refused(SignalError::new(
            ErrorCode::BadMessage,
            "binary frames are not accepted; send JSON text",
        )),
        Message::Ping(_) | Message::Pong(_) => Frame::Control,
        Message::Close(_) => Frame::Close,
    }
}

/// Parses one client text message, enforcing [`MAX_MESSAGE_BYTES`].
pub(crate) fn parse_text(text: &str) -> Result<ClientMessage, SignalError> {
    if text.len() > MAX_MESSAGE_BYTES {
        return Err(SignalError::new(
            ErrorCode::MessageTooLarge,
            format!(
                "message of {} bytes is above the limit of {MAX_MESSAGE_BYTES} bytes",
                text.len()
            ),
        ));
    }
    serde_json::from_str(text).map_err(|e| {
        SignalError::new(
            ErrorCode::BadMessage,
            truncate(&e.to_string(), MAX_DETAIL_CHARS),
        )
    })
}

/// The first `max` characters of `s`, with `…` when something was cut.
pub(crate) fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_owned(),
    }
}

fn not_joined(message: &str) -> ServerMessage {
    SignalError::new(ErrorCode::NotJoined, message).into()
}

/// A `join` as the client sent it.
struct JoinAttempt {
    version: u32,
    room: String,
    name: String,
    token: Option<String>,
    region: Option<String>,
}

impl JoinAttempt {
    /// Checks the version, the names and the token (when there are `keys`), then asks the media
    /// side, waiting at most `wait`.
    async fn run<B: MediaBackend>(
        self,
        backend: &B,
        keys: Option<&KeySet>,
        wait: Duration,
    ) -> Result<Session, SignalError> {
        let JoinAttempt {
            version,
            room,
            name,
            token,
            region,
        } = self;
        if version != PROTOCOL_VERSION {
            return Err(SignalError::new(
                ErrorCode::UnsupportedVersion,
                format!("this server speaks protocol version {PROTOCOL_VERSION}, not {version}"),
            ));
        }
        validate_room_name(&room)?;
        validate_display_name(&name)?;
        if let Some(region) = &region {
            validate_region(region)?;
        }
        let request = match keys {
            None => JoinRequest {
                room,
                name,
                token,
                identity: None,
                metadata: None,
                grants: Grants::all(),
                region,
            },
            Some(keys) => {
                let claims = keys.authorize_join(token.as_deref(), &room)?;
                JoinRequest {
                    room,
                    name: claims.name.unwrap_or(name),
                    token,
                    identity: Some(claims.sub),
                    metadata: claims.metadata,
                    grants: claims.grants,
                    region,
                }
            }
        };
        debug!(room = %request.room, "joining");
        match timeout(wait, backend.join(request)).await {
            Ok(result) => result,
            Err(_) => {
                warn!("media backend did not answer join in time");
                Err(SignalError::new(
                    ErrorCode::ServerBusy,
                    "the server did not answer in time; try again",
                ))
            }
        }
    }
}

struct Conn<B: MediaBackend> {
    socket: WebSocket,
    backend: Arc<B>,
    config: RouterConfig,
    phase: Phase<B>,
    /// When the client last sent any frame.
    last_frame: Instant,
    next_ping: Instant,
    /// The client's messages, against [`RouterConfig::message_rate`].
    rate: MessageRate,
    /// Joins refused so far.
    refused_joins: u32,
    /// The slot among sockets that have not joined; `None` once joined.
    pending: Option<IpPermit>,
}

impl<B: MediaBackend> Conn<B> {
    async fn drive(&mut self) -> End {
        loop {
            let (at, wake) = self.next_wake();
            let step = tokio::select! {
                frame = self.socket.recv() => match frame {
                    Some(Ok(frame)) => {
                        self.last_frame = Instant::now();
                        self.check_rate(frame).await
                    }
                    Some(Err(e)) => {
                        debug!(error = %e, "socket failed");
                        Break(End::from_read_error(e))
                    }
                    None => Break(End::Gone),
                },
                event = self.phase.next_event() => self.handle_event(event).await,
                () = sleep_until(at) => self.handle_wake(wake).await,
            };
            if let Break(end) = step {
                return end;
            }
        }
    }

    fn next_wake(&self) -> (Instant, Wake) {
        let phase_deadline = match &self.phase {
            Phase::AwaitingJoin { deadline } => Some((*deadline, Wake::JoinTimeout)),
            Phase::Leaving { deadline, .. } => Some((*deadline, Wake::LeaveTimeout)),
            Phase::Joined { .. } | Phase::Done => None,
        };
        earliest(
            (
                self.last_frame + self.config.idle_timeout,
                Wake::IdleTimeout,
            ),
            [phase_deadline, Some((self.next_ping, Wake::Ping))],
        )
    }

    /// Lets a message through [`Conn::rate`]; control frames always pass.
    async fn check_rate(&mut self, frame: Message) -> ControlFlow<End> {
        if !matches!(frame, Message::Text(_) | Message::Binary(_)) {
            return self.handle_frame(frame).await;
        }
        match self.rate.check(self.last_frame) {
            RateVerdict::Accept => self.handle_frame(frame).await,
            RateVerdict::Refuse { reply } => {
                metrics::counter!("sfu_ws_messages_rate_limited_total").increment(1);
                if !reply {
                    return Continue(());
                }
                debug!("messages rate limited");
                let e = SignalError::new(
                    ErrorCode::RateLimited,
                    "too many messages; some were dropped, slow down",
                );
                self.send(&e.into()).await
            }
            RateVerdict::Close => Break(End::Flood),
        }
    }

    async fn handle_frame(&mut self, frame: Message) -> ControlFlow<End> {
        match read_frame(frame) {
            Frame::Message(msg) => self.handle_message(msg).await,
            Frame::Control => Continue(()),
            Frame::Close => Break(End::Gone),
            Frame::Refused(e) => {
                debug!(code = e.code.as_str(), "message refused");
                self.send(&e.into()).await
            }
        }
    }

    async fn handle_message(&mut self, msg: ClientMessage) -> ControlFlow<End> {
        let reply = match (self.phase.stage(), msg) {
            (_, ClientMessage::Ping) => Some(ServerMessage::Pong),
            (
                Stage::NotJoined,
                ClientMessage::Join {
                    version,
                    room,
                    name,
                    token,
                    region,
                },
            ) => {
                let attempt = JoinAttempt {
                    version,
                    room,
                    name,
                    token,
                    region,
                };
                return self.handle_join(attempt).await;
            }
            (
                Stage::NotJoined,
                ClientMessage::Resume {
                    version,
                    participant_id,
                    secret,
                },
            ) => {
                let request = ResumeRequest {
                    participant_id,
                    secret,
                };
                return self.handle_resume(version, request).await;
            }
            (Stage::NotJoined, _) => Some(not_joined("send join first")),
            (
                Stage::Joined | Stage::Leaving,
                ClientMessage::Join { .. } | ClientMessage::Resume { .. },
            ) => Some(
                SignalError::new(ErrorCode::AlreadyJoined, "this socket has joined already").into(),
            ),
            (Stage::Joined, ClientMessage::Offer { sdp, sources }) => {
                // The sources go first, in order on the same queue: the offer applies them.
                let named = sources.map(|s| s.into_iter().collect());
                named
                    .and_then(|s| self.handle_signal(ClientSignal::TrackSources(s)))
                    .or_else(|| self.handle_signal(ClientSignal::Offer(sdp)))
            }
            (Stage::Joined, ClientMessage::Answer { sdp }) => {
                self.handle_signal(ClientSignal::Answer(sdp))
            }
            (Stage::Joined, ClientMessage::Candidate(c)) => {
                self.handle_signal(ClientSignal::Candidate(c))
            }
            (
                Stage::Joined,
                ClientMessage::TrackSettings {
                    track_id,
                    visible,
                    width,
                    height,
                    pinned,
                },
            ) => self.handle_signal(ClientSignal::TrackSettings {
                track_id,
                visible,
                width,
                height,
                pinned,
            }),
            (Stage::Joined, ClientMessage::Mute { track_id, muted }) => {
                self.handle_signal(ClientSignal::Mute { track_id, muted })
            }
            (Stage::Joined, ClientMessage::Leave) => {
                self.start_leaving();
                None
            }
            (Stage::Leaving, ClientMessage::Leave) => None,
            (
                Stage::Leaving,
                ClientMessage::Offer { .. }
                | ClientMessage::Answer { .. }
                | ClientMessage::Candidate(_)
                | ClientMessage::TrackSettings { .. }
                | ClientMessage::Mute { .. },
            ) => Some(not_joined("this socket has left the room")),
        };
        match reply {
            Some(reply) => self.send(&reply).await,
            None => Continue(()),
        }
    }

    async fn handle_join(&mut self, attempt: JoinAttempt) -> ControlFlow<End> {
        let room = attempt.room.clone();
        let result = attempt
            .run(
                &*self.backend,
                self.config.keys.as_ref(),
                self.config.backend_timeout,
            )
            .await;
        if result.is_ok() {
            tracing::Span::current().record("room", room.as_str());
        }
        self.admitted(result, "joined").await
    }

    /// A `resume`: the media side checks the secret; a refusal counts like a refused join.
    async fn handle_resume(&mut self, version: u32, request: ResumeRequest) -> ControlFlow<End> {
        let result = if version != PROTOCOL_VERSION {
            Err(SignalError::new(
                ErrorCode::UnsupportedVersion,
                format!("this server speaks protocol version {PROTOCOL_VERSION}, not {version}"),
            ))
        } else if request.participant_id.len() > 64 || request.secret.len() > 128 {
            Err(SignalError::new(
                ErrorCode::ResumeFailed,
                "no such session; join again",
            ))
        } else {
            match timeout(self.config.backend_timeout, self.backend.resume(request)).await {
                Ok(result) => result,
                Err(_) => Err(SignalError::new(
                    ErrorCode::ServerBusy,
                    "the server did not answer in time; try again",
                )),
            }
        };
        self.admitted(result, "resumed").await
    }

    /// The outcome of a join or resume.
    async fn admitted(
        &mut self,
        result: Result<Session, SignalError>,
        what: &'static str,
    ) -> ControlFlow<End> {
        match result {
            Ok(session) => {
                let span = tracing::Span::current();
                span.record("participant", session.participant_id.as_str());
                info!("{what}");
                self.pending = None;
                self.phase = Phase::Joined {
                    member: Member {
                        backend: Arc::clone(&self.backend),
                        id: session.participant_id,
                        gone: false,
                    },
                    events: session.events,
                };
                Continue(())
            }
            Err(e) if e.redirect.is_some() => {
                info!(
                    to = e.redirect.as_deref().unwrap_or_default(),
                    "sent to another node"
                );
                self.send(&e.into()).await?;
                Break(End::Redirected)
            }
            Err(e) => {
                debug!(code = e.code.as_str(), "{what} refused");
                self.refused_joins += 1;
                self.send(&e.into()).await?;
                if self.refused_joins >= self.config.max_join_attempts {
                    return Break(End::TooManyJoins);
                }
                Continue(())
            }
        }
    }

    /// Passes a signal on; the reply is the media side's refusal, if any.
    fn handle_signal(&self, signal: ClientSignal) -> Option<ServerMessage> {
        let Phase::Joined { member, .. } = &self.phase else {
            return Some(not_joined("send join first"));
        };
        match &signal {
            ClientSignal::Offer(sdp) => debug!(bytes = sdp.len(), "offer"),
            ClientSignal::Answer(sdp) => debug!(bytes = sdp.len(), "answer"),
            ClientSignal::Candidate(c) => debug!(bytes = c.candidate.len(), "candidate"),
            ClientSignal::TrackSettings { visible, .. } => debug!(visible, "track settings"),
            ClientSignal::Mute { muted, .. } => debug!(muted, "mute"),
            ClientSignal::TrackSources(s) => debug!(tracks = s.len(), "track sources"),
        }
        match self.backend.signal(&member.id, signal) {
            Ok(()) => None,
            Err(e) => {
                debug!(code = e.code.as_str(), "signal refused");
                Some(e.into())
            }
        }
    }

    fn start_leaving(&mut self) {
        if let Phase::Joined { member, events } = std::mem::replace(&mut self.phase, Phase::Done) {
            info!("leaving");
            member.leave();
            self.phase = Phase::Leaving {
                events,
                deadline: Instant::now() + self.config.leave_timeout,
            };
        }
    }

    async fn handle_event(&mut self, event: Option<ServerMessage>) -> ControlFlow<End> {
        match event {
            Some(ServerMessage::Left { reason }) => {
                self.phase.end_by_backend();
                self.send(&ServerMessage::Left { reason }).await?;
                Break(End::Left)
            }
            Some(ServerMessage::Superseded) => {
                self.phase.end_by_backend();
                Break(End::Superseded)
            }
            Some(event) => self.send(&event).await,
            None => {
                let reason = match self.phase.stage() {
                    Stage::Leaving => "left",
                    Stage::Joined | Stage::NotJoined => "ended",
                };
                debug!("event channel closed");
                self.phase.end_by_backend();
                self.send_left(reason).await
            }
        }
    }

    async fn handle_wake(&mut self, wake: Wake) -> ControlFlow<End> {
        match wake {
            Wake::Ping => {
                self.next_ping = Instant::now() + self.config.ping_interval;
                self.send_frame(Message::Ping(Default::default())).await
            }
            Wake::IdleTimeout => Break(End::Idle),
            Wake::JoinTimeout => Break(End::JoinTimeout),
            Wake::LeaveTimeout => {
                debug!("no left from the media side in time");
                self.send_left("left").await
            }
        }
    }

    /// Tells the client it is out of the room; the session ends.
    async fn send_left(&mut self, reason: &str) -> ControlFlow<End> {
        self.send(&ServerMessage::Left {
            reason: reason.to_owned(),
        })
        .await?;
        Break(End::Left)
    }

    async fn send(&mut self, msg: &ServerMessage) -> ControlFlow<End> {
        match serde_json::to_string(msg) {
            Ok(text) => self.send_frame(Message::Text(text.into())).await,
            Err(e) => {
                warn!(error = %e, "server message did not serialize");
                Continue(())
            }
        }
    }

    async fn send_frame(&mut self, frame: Message) -> ControlFlow<End> {
        match timeout(self.config.send_timeout, self.socket.send(frame)).await {
            Ok(Ok(())) => Continue(()),
            Ok(Err(e)) => {
                debug!(error = %e, "send failed");
                Break(End::Gone)
            }
            Err(_) => Break(End::SendStalled),
        }
    }

    /// Lets the participant go if it is still in, then closes the socket within [`CLOSE_GRACE`].
    async fn finish(mut self, end: End) {
        drop(std::mem::replace(&mut self.phase, Phase::Done));
        info!(end = end.as_str(), "session ended");
        if end == End::SendStalled {
            return;
        }
        if let Some(frame) = end.close_frame() {
            let close = self.socket.send(Message::Close(Some(frame)));
            if !matches!(timeout(CLOSE_GRACE, close).await, Ok(Ok(()))) {
                return;
            }
        }
        let drain = async { while let Some(Ok(_)) = self.socket.recv().await {} };
        if timeout(CLOSE_GRACE, drain).await.is_err() {
            debug!("client did not finish the close handshake");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earliest_picks_the_first_deadline_and_the_first_listed_on_ties() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        assert_eq!(
            earliest(
                (t0 + 3 * s, 'a'),
                [None, Some((t0 + s, 'b')), Some((t0 + 2 * s, 'c'))]
            ),
            (t0 + s, 'b')
        );
        assert_eq!(
            earliest((t0 + s, 'a'), [Some((t0 + s, 'b'))]),
            (t0 + s, 'a')
        );
        assert_eq!(earliest((t0, 'a'), [None]), (t0, 'a'));
    }

    #[test]
    fn truncate_cuts_on_character_boundaries() {
        assert_eq!(truncate("abc", 3), "abc");
        assert_eq!(truncate("abcd", 3), "abc…");
        assert_eq!(truncate("ééé", 2), "éé…");
        assert_eq!(truncate("", 0), "");
    }

    #[test]
    fn parse_text_sorts_bad_input_by_code() {
        let code = |text: &str| parse_text(text).map_err(|e| e.code);
        assert_eq!(code(r#"{"type":"ping"}"#), Ok(ClientMessage::Ping));
        for bad in [
            "",
            "null",
            "[]",
            "{}",
            r#"{"type":"dance"}"#,
            r#"{"type":"offer"}"#,
        ] {
            assert_eq!(code(bad), Err(ErrorCode::BadMessage), "{bad:?}");
        }
        let huge = format!(
            r#"{{"type":"offer","sdp":"{}"}}"#,
            "a".repeat(MAX_MESSAGE_BYTES)
        );
        assert_eq!(code(&huge), Err(ErrorCode::MessageTooLarge));
    }

    #[test]
    fn an_unknown_track_source_is_a_bad_message_that_names_the_known_ones() {
        let Err(e) = parse_text(r#"{"type":"offer","sdp":"v=0","sources":{"1":"webcam"}}"#) else {
            panic!("accepted an unknown source")
        };
        assert_eq!(e.code, ErrorCode::BadMessage);
        assert!(
            e.message.contains("unknown variant `webcam`"),
            "{}",
            e.message
        );
        assert!(e
            .message
            .contains("`camera`, `microphone`, `screen`, `screen_audio`"));
    }

    #[test]
    fn bad_message_details_are_bounded() {
        let long_type = format!(r#"{{"type":"{}"}}"#, "x".repeat(10_000));
        let Err(e) = parse_text(&long_type) else {
            panic!("accepted an unknown type")
        };
        assert!(
            e.message.chars().count() <= MAX_DETAIL_CHARS + 1,
            "{}",
            e.message
        );
    }
}
