//! Where rooms and participants live, and the rooms' settings. Touched on join, leave, REST calls
//! and the once-a-second sweep of empty rooms; never per packet.
//!
//! A room exists from its creation (REST `POST /api/rooms`, or the first join when
//! [`RoomDefaults::auto_create`] is set) until it is deleted or has been empty for its
//! `empty_timeout`. It is placed on a worker while it has participants; an empty room has no
//! worker, and its next participant goes to the least loaded one. A room with more participants
//! on each of its workers than [`Limits::room_participants_per_worker`] spreads: its next
//! participant goes to the least loaded worker, which then shares the room with the others (the
//! engines hand each other the room's events and packets, see `core::shard`).
//!
//! Each room carries a generation number, so that a participant of a deleted room that leaves
//! late does not count against a new room of the same name.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use signal::auth::unix_seconds;
use signal::protocol::{ErrorCode, SignalError};
use signal::rest::dto::{CreateRoom, RoomInfo, UpdateRoom};

use crate::core::VideoCodecs;

/// Settings for rooms that are not given their own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomDefaults {
    /// A join to a room that does not exist creates it (otherwise: `not_found`).
    pub auto_create: bool,
    /// Most participants per room; 0 for no limit.
    pub max_participants: u32,
    /// How long an empty room stays open.
    pub empty_timeout: Duration,
    /// The video codecs publishers may send, in order of preference (empty: any).
    pub video_codecs: VideoCodecs,
}

impl Default for RoomDefaults {
    fn default() -> Self {
        RoomDefaults {
            auto_create: true,
            max_participants: 0,
            empty_timeout: Duration::from_secs(300),
            video_codecs: VideoCodecs::any(),
        }
    }
}

/// Admission limits: joins beyond them are refused with `server_busy`, so that the calls already
/// running keep their share of the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most participants on the node; 0 for no limit.
    pub max_participants: u32,
    /// Most participants on one worker; 0 for no limit.
    pub max_participants_per_worker: u32,
    /// Participants of one room a worker takes before the room's next participant goes to the
    /// least loaded worker (the room spreads); 0: a room stays on one worker.
    pub room_participants_per_worker: u32,
}

/// Participants of one room a worker takes before the room spreads to another, by default.
pub const ROOM_PARTICIPANTS_PER_WORKER: u32 = 100;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_participants: 0,
            max_participants_per_worker: 0,
            room_participants_per_worker: ROOM_PARTICIPANTS_PER_WORKER,
        }
    }
}

fn busy(message: &str) -> SignalError {
    SignalError::new(ErrorCode::ServerBusy, message)
}

#[derive(Debug)]
struct RoomEntry {
    generation: u64,
    max_participants: u32,
    empty_timeout: Duration,
    metadata: String,
    video_codecs: VideoCodecs,
    created_at: SystemTime,
    /// The workers the room's participants are on, with how many on each, in the order the
    /// room came to them (empty while it has nobody).
    workers: Vec<(usize, usize)>,
    /// Participants admitted or being admitted.
    participants: usize,
    /// Since when the room has had nobody in it.
    empty_since: Option<Instant>,
    /// This node serves part of a room that another node of the cluster owns (it took the
    /// owner's settings): the owner sends the room's `room_started` and `room_finished`.
    relayed: bool,
}

impl RoomEntry {
    fn info(&self, name: &str) -> RoomInfo {
        RoomInfo {
            name: name.to_owned(),
            max_participants: self.max_participants,
            empty_timeout: u32::try_from(self.empty_timeout.as_secs()).unwrap_or(u32::MAX),
            metadata: self.metadata.clone(),
            created_at: unix_seconds(self.created_at),
            num_participants: u32::try_from(self.participants).unwrap_or(u32::MAX),
            video_codecs: self.video_codecs.names(),
            node: None,
        }
    }
}

#[derive(Debug)]
struct Seat {
    worker: usize,
    room: String,
    generation: u64,
    /// The identity from its access token, once the join names one.
    identity: Option<String>,
    /// For a WHEP player: the identity of the publisher it plays.
    plays: Option<String>,
}

/// A place reserved for a joining participant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    /// The worker it goes to.
    pub worker: usize,
    /// When the join brings the room to a new worker: the room's other workers, which must
    /// share it with that one from now on.
    pub link: Vec<usize>,
    /// The room, when this join created it.
    pub created: Option<RoomInfo>,
    /// The room's metadata ("" when none).
    pub metadata: String,
    /// The room's video codec policy.
    pub video_codecs: VideoCodecs,
}

/// A worker no longer has participants of a room that others still have: they stop sharing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unlink {
    /// The room.
    pub room: String,
    /// The worker that has nobody in it any more.
    pub worker: usize,
    /// The room's other workers.
    pub others: Vec<usize>,
}

/// What a change of a room's settings means for the workers it is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomUpdate {
    /// The room as it is now.
    pub info: RoomInfo,
    /// The workers it is on (empty while it has no participants).
    pub workers: Vec<usize>,
    /// The new metadata, when it changed (the participants are told).
    pub metadata: Option<String>,
    /// The new video codec policy, when it changed.
    pub video_codecs: Option<VideoCodecs>,
}

/// The room registry and the placement of rooms and participants on workers.
#[derive(Debug)]
pub struct Placement {
    rooms: HashMap<String, RoomEntry>,
    participants: HashMap<String, Seat>,
    load: Vec<usize>,
    defaults: RoomDefaults,
    next_generation: u64,
    limits: Limits,
    /// Shutting down: no join is admitted any more.
    draining: bool,
}

fn not_found() -> SignalError {
    SignalError::new(ErrorCode::NotFound, "no such room")
}

fn parse_codecs(names: &[String]) -> Result<VideoCodecs, SignalError> {
    VideoCodecs::parse(names).map_err(|m| SignalError::new(ErrorCode::InvalidRequest, m))
}

impl Placement {
    /// Placement over `workers` workers with default room settings.
    pub fn new(workers: usize) -> Self {
        Placement::with_defaults(workers, RoomDefaults::default())
    }

    /// Placement over `workers` workers.
    pub fn with_defaults(workers: usize, defaults: RoomDefaults) -> Self {
        Placement {
            rooms: HashMap::new(),
            participants: HashMap::new(),
            load: vec![0; workers],
            defaults,
            next_generation: 1,
            limits: Limits::default(),
            draining: false,
        }
    }

    /// Sets the admission limits.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// From now on every join is refused with `server_busy` (the server is shutting down).
    pub fn start_draining(&mut self) {
        self.draining = true;
    }

    /// Whether a join could be admitted now: not shutting down, and below the node's limit with
    /// at least one worker below its own.
    pub fn accepting(&self) -> bool {
        let l = self.limits;
        let node_ok = l.max_participants == 0 || self.total() < l.max_participants as usize;
        let worker_ok = l.max_participants_per_worker == 0
            || self
                .load
                .iter()
                .any(|n| *n < l.max_participants_per_worker as usize);
        !self.draining && node_ok && worker_ok
    }

    /// Participants on the node (admitted or being admitted).
    pub fn total(&self) -> usize {
        self.load.iter().sum()
    }

    /// Rooms on the node.
    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    /// Whether `room` is on the node.
    pub fn has_room(&self, room: &str) -> bool {
        self.rooms.contains_key(room)
    }

    /// Whether the node is shutting down.
    pub fn is_draining(&self) -> bool {
        self.draining
    }

    /// The room defaults.
    pub fn defaults(&self) -> &RoomDefaults {
        &self.defaults
    }

    fn new_entry(&mut self, now: Instant) -> RoomEntry {
        let generation = self.next_generation;
        self.next_generation += 1;
        RoomEntry {
            generation,
            max_participants: self.defaults.max_participants,
            empty_timeout: self.defaults.empty_timeout,
            metadata: String::new(),
            video_codecs: self.defaults.video_codecs.clone(),
            created_at: SystemTime::now(),
            workers: Vec::new(),
            participants: 0,
            empty_since: Some(now),
            relayed: false,
        }
    }

    /// Reserve a place for participant `id` in `room`: the room's worker, or for a room without
    /// participants the least loaded worker. Creates the room if it is missing and rooms are
    /// created on join; refuses with `not_found` otherwise, and with `room_full` at the limit.
    pub fn reserve(
        &mut self,
        id: &str,
        room: &str,
        now: Instant,
    ) -> Result<Reservation, SignalError> {
        self.reserve_near(id, room, None, None, now)
    }

    /// Like [`Placement::reserve`], keeping a WHEP player and its publisher on one worker (the
    /// player receives the publisher's tracks on the m-lines of its own offer, which only the
    /// publisher's worker can do): a player (`plays`: the identity it plays) goes to the worker
    /// of that publisher, and a participant with `identity` to the worker of a player already
    /// waiting for it, when that worker has room.
    pub fn reserve_near(
        &mut self,
        id: &str,
        room: &str,
        plays: Option<&str>,
        identity: Option<&str>,
        now: Instant,
    ) -> Result<Reservation, SignalError> {
        let near = match (plays, identity) {
            (Some(publisher), _) => {
                self.worker_where(room, |s| s.identity.as_deref() == Some(publisher))
            }
            (None, Some(identity)) => {
                self.worker_where(room, |s| s.plays.as_deref() == Some(identity))
            }
            (None, None) => None,
        };
        if self.draining {
            return Err(busy("the server is shutting down; join another one"));
        }
        let l = self.limits;
        if l.max_participants > 0 && self.total() >= l.max_participants as usize {
            return Err(busy("the server is at its participant limit"));
        }
        let created = if self.rooms.contains_key(room) {
            None
        } else if self.defaults.auto_create {
            let entry = self.new_entry(now);
            let info = entry.info(room);
            self.rooms.insert(room.to_owned(), entry);
            Some(info)
        } else {
            return Err(SignalError::new(
                ErrorCode::NotFound,
                "the room does not exist, and this server does not create rooms on join",
            ));
        };
        // `load` is never empty: the server starts at least one worker.
        let per_worker = l.max_participants_per_worker as usize;
        let has_room = |load: usize| per_worker == 0 || load < per_worker;
        let least_loaded = (0..self.load.len())
            .min_by_key(|w| self.load[*w])
            .unwrap_or(0);
        let spread = l.room_participants_per_worker as usize;
        let workers = self.rooms.get(room).map_or(&[][..], |r| &r.workers[..]);
        // The room's worker with the fewest of its participants, while it has room for them.
        let own = workers
            .iter()
            .filter(|(w, n)| (spread == 0 || *n < spread) && has_room(self.load[*w]))
            .min_by_key(|(_, n)| *n)
            .map(|(w, _)| *w);
        let near = near.filter(|w| has_room(self.load[*w]));
        let target = match (near, own, workers.first()) {
            (Some(w), _, _) | (None, Some(w), _) => w,
            // A room on one worker stays there (and is refused when that worker is full),
            // unless it may spread.
            (None, None, Some(&(w, _))) if spread == 0 => w,
            _ => least_loaded,
        };
        if !has_room(self.load[target]) {
            if let Some(info) = &created {
                self.rooms.remove(&info.name);
            }
            return Err(busy(
                "the media worker of this room is at its participant limit",
            ));
        }
        let Some(entry) = self.rooms.get_mut(room) else {
            return Err(not_found());
        };
        if entry.max_participants > 0 && entry.participants >= entry.max_participants as usize {
            return Err(SignalError::new(
                ErrorCode::RoomFull,
                format!(
                    "the room is at its limit of {} participants",
                    entry.max_participants
                ),
            ));
        }
        let worker = target;
        let link = match entry.workers.iter_mut().find(|(w, _)| *w == worker) {
            Some((_, n)) => {
                *n += 1;
                Vec::new()
            }
            None => {
                let others = entry.workers.iter().map(|(w, _)| *w).collect();
                entry.workers.push((worker, 1));
                others
            }
        };
        entry.participants += 1;
        entry.empty_since = None;
        self.load[worker] += 1;
        self.participants.insert(
            id.to_owned(),
            Seat {
                worker,
                room: room.to_owned(),
                generation: entry.generation,
                identity: None,
                plays: plays.map(str::to_owned),
            },
        );
        Ok(Reservation {
            worker,
            link,
            created,
            metadata: entry.metadata.clone(),
            video_codecs: entry.video_codecs.clone(),
        })
    }

    /// Participant `id` is gone (or never made it in). When it was the last of its room on its
    /// worker while the room goes on elsewhere, says which workers stop sharing the room.
    pub fn release(&mut self, id: &str, now: Instant) -> Option<Unlink> {
        let seat = self.participants.remove(id)?;
        self.load[seat.worker] = self.load[seat.worker].saturating_sub(1);
        let r = self.rooms.get_mut(&seat.room)?;
        if r.generation != seat.generation {
            return None;
        }
        r.participants = r.participants.saturating_sub(1);
        if r.participants == 0 {
            r.empty_since = Some(now);
        }
        let i = r.workers.iter().position(|(w, _)| *w == seat.worker)?;
        r.workers[i].1 = r.workers[i].1.saturating_sub(1);
        if r.workers[i].1 > 0 {
            return None;
        }
        r.workers.remove(i);
        (!r.workers.is_empty()).then(|| Unlink {
            room: seat.room,
            worker: seat.worker,
            others: r.workers.iter().map(|(w, _)| *w).collect(),
        })
    }

    /// Participant `id` (just reserved) has `identity`. Returns the other participants of its
    /// room with that identity on other workers, with their workers: the newer session takes
    /// over, so they are to leave (a worker's engine sees to those on its own).
    pub fn claim_identity(&mut self, id: &str, identity: &str) -> Vec<(String, usize)> {
        let Some(seat) = self.participants.get_mut(id) else {
            return Vec::new();
        };
        seat.identity = Some(identity.to_owned());
        let (room, generation, worker) = (seat.room.clone(), seat.generation, seat.worker);
        self.participants
            .iter()
            .filter(|(other, s)| {
                *other != id
                    && s.room == room
                    && s.generation == generation
                    && s.worker != worker
                    && s.identity.as_deref() == Some(identity)
            })
            .map(|(other, s)| (other.clone(), s.worker))
            .collect()
    }

    /// The worker of a participant of `room` (the current room of that name) that `f` picks.
    fn worker_where(&self, room: &str, f: impl Fn(&Seat) -> bool) -> Option<usize> {
        let generation = self.rooms.get(room)?.generation;
        self.participants
            .values()
            .find(|s| s.room == room && s.generation == generation && f(s))
            .map(|s| s.worker)
    }

    /// The worker of participant `id`.
    pub fn worker_of(&self, id: &str) -> Option<usize> {
        self.participants.get(id).map(|s| s.worker)
    }

    /// The worker of participant `id`, if it is in `room` (the current room of that name).
    pub fn worker_in_room(&self, id: &str, room: &str) -> Option<usize> {
        let seat = self.participants.get(id)?;
        let r = self.rooms.get(room)?;
        (seat.room == room && seat.generation == r.generation).then_some(seat.worker)
    }

    /// Participants per worker.
    pub fn load(&self) -> &[usize] {
        &self.load
    }

    /// Creates a room with the given settings (defaults for the ones missing); `conflict` if it
    /// exists.
    pub fn create(&mut self, req: &CreateRoom, now: Instant) -> Result<RoomInfo, SignalError> {
        if self.rooms.contains_key(&req.name) {
            return Err(SignalError::new(ErrorCode::Conflict, "the room exists"));
        }
        let codecs = req.video_codecs.as_deref().map(parse_codecs).transpose()?;
        let mut entry = self.new_entry(now);
        if let Some(codecs) = codecs {
            entry.video_codecs = codecs;
        }
        if let Some(m) = req.max_participants {
            entry.max_participants = m;
        }
        if let Some(t) = req.empty_timeout {
            entry.empty_timeout = Duration::from_secs(t.into());
        }
        if let Some(m) = &req.metadata {
            entry.metadata.clone_from(m);
        }
        let info = entry.info(&req.name);
        self.rooms.insert(req.name.clone(), entry);
        Ok(info)
    }

    /// One room.
    pub fn info(&self, room: &str) -> Result<RoomInfo, SignalError> {
        self.rooms
            .get(room)
            .map(|r| r.info(room))
            .ok_or_else(not_found)
    }

    /// Every room, sorted by name.
    pub fn list(&self) -> Vec<RoomInfo> {
        let mut rooms: Vec<RoomInfo> = self.rooms.iter().map(|(n, r)| r.info(n)).collect();
        rooms.sort_by(|a, b| a.name.cmp(&b.name));
        rooms
    }

    /// The first worker of `room` (each of its workers knows every participant), `None` while
    /// it is empty.
    pub fn room_worker(&self, room: &str) -> Result<Option<usize>, SignalError> {
        self.room_workers(room).map(|w| w.first().copied())
    }

    /// The workers `room` is on (empty while it has no participants).
    pub fn room_workers(&self, room: &str) -> Result<Vec<usize>, SignalError> {
        self.rooms
            .get(room)
            .map(|r| r.workers.iter().map(|(w, _)| *w).collect())
            .ok_or_else(not_found)
    }

    /// Changes a room's settings. Returns the room and what changed that its worker (if it
    /// has participants) must hear of.
    pub fn update(&mut self, room: &str, req: &UpdateRoom) -> Result<RoomUpdate, SignalError> {
        let codecs = req.video_codecs.as_deref().map(parse_codecs).transpose()?;
        let r = self.rooms.get_mut(room).ok_or_else(not_found)?;
        if let Some(m) = req.max_participants {
            r.max_participants = m;
        }
        if let Some(t) = req.empty_timeout {
            r.empty_timeout = Duration::from_secs(t.into());
        }
        let metadata = req.metadata.as_ref().filter(|m| **m != r.metadata).cloned();
        if let Some(m) = &metadata {
            r.metadata.clone_from(m);
        }
        let video_codecs = codecs.filter(|c| *c != r.video_codecs);
        if let Some(c) = &video_codecs {
            r.video_codecs = c.clone();
        }
        Ok(RoomUpdate {
            info: r.info(room),
            workers: r.workers.iter().map(|(w, _)| *w).collect(),
            metadata,
            video_codecs,
        })
    }

    /// Removes a room from the registry. Its participants keep their seats until they leave.
    pub fn remove(&mut self, room: &str) -> Option<(RoomInfo, Vec<usize>)> {
        self.rooms
            .remove(room)
            .map(|r| (r.info(room), r.workers.iter().map(|(w, _)| *w).collect()))
    }

    /// Creates `req.name` as this node's part of a room another node owns, with the owner's
    /// settings (see [`RoomEntry`]'s `relayed`).
    pub fn create_relayed(
        &mut self,
        req: &CreateRoom,
        now: Instant,
    ) -> Result<RoomInfo, SignalError> {
        let info = self.create(req, now)?;
        if let Some(r) = self.rooms.get_mut(&req.name) {
            r.relayed = true;
        }
        Ok(info)
    }

    /// Whether this node serves `room` as part of a room another node owns.
    pub fn is_relayed(&self, room: &str) -> bool {
        self.rooms.get(room).is_some_and(|r| r.relayed)
    }

    /// Removes and returns the rooms that have been empty for their `empty_timeout`, each with
    /// whether it was a relayed part (see [`Placement::is_relayed`]).
    pub fn close_expired(&mut self, now: Instant) -> Vec<(RoomInfo, bool)> {
        let expired: Vec<String> = self
            .rooms
            .iter()
            .filter(|(_, r)| {
                r.participants == 0
                    && r.empty_since
                        .is_some_and(|t| now.saturating_duration_since(t) >= r.empty_timeout)
            })
            .map(|(n, _)| n.clone())
            .collect();
        expired
            .into_iter()
            .filter_map(|n| self.rooms.remove(&n).map(|r| (r.info(&n), r.relayed)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admission_limits_and_draining_refuse_with_server_busy() {
        let now = Instant::now();
        let limits = Limits {
            max_participants: 3,
            max_participants_per_worker: 2,
            room_participants_per_worker: 0,
        };
        let mut p = Placement::new(2).with_limits(limits);
        let code = |r: Result<Reservation, SignalError>| r.unwrap_err().code;
        reserve(&mut p, "a", "r1");
        reserve(&mut p, "b", "r1");
        // r1's worker is full and rooms do not spread: the others are untouched.
        assert_eq!(code(p.reserve("c", "r1", now)), ErrorCode::ServerBusy);
        assert!(p.accepting());
        reserve(&mut p, "c", "r2");
        // The node is full.
        assert!(!p.accepting());
        assert_eq!(code(p.reserve("d", "r3", now)), ErrorCode::ServerBusy);
        assert!(p.info("r3").is_err());
        p.release("c", now);
        assert!(p.accepting());
        p.start_draining();
        assert!(!p.accepting());
        assert_eq!(code(p.reserve("e", "r2", now)), ErrorCode::ServerBusy);
    }

    fn reserve(p: &mut Placement, id: &str, room: &str) -> usize {
        p.reserve(id, room, Instant::now()).unwrap().worker
    }

    #[test]
    fn rooms_stay_on_one_worker_and_new_rooms_go_to_the_least_loaded() {
        let now = Instant::now();
        let mut p = Placement::new(2);
        assert_eq!(reserve(&mut p, "a", "r1"), 0);
        assert_eq!(reserve(&mut p, "b", "r1"), 0);
        assert_eq!(reserve(&mut p, "c", "r2"), 1);
        assert_eq!(reserve(&mut p, "d", "r3"), 1);
        assert_eq!(p.load(), &[2, 2]);
        p.release("a", now);
        p.release("b", now);
        assert_eq!(p.load(), &[0, 2]);
        // r1 is empty; its next participant goes to the least loaded worker.
        assert_eq!(reserve(&mut p, "e", "r1"), 0);
        assert_eq!(p.worker_of("d"), Some(1));
        assert_eq!(p.worker_of("a"), None);
        p.release("zzz", now);
    }

    #[test]
    fn a_large_room_spreads_evenly_and_workers_leave_it_when_their_last_participant_does() {
        let now = Instant::now();
        let limits = Limits {
            room_participants_per_worker: 3,
            ..Limits::default()
        };
        let mut p = Placement::new(3).with_limits(limits);
        reserve(&mut p, "x", "other"); // worker 0 has someone else
        let joins: Vec<Reservation> = (0..9)
            .map(|i| p.reserve(&format!("p{i}"), "big", now).unwrap())
            .collect();
        let workers: Vec<usize> = joins.iter().map(|r| r.worker).collect();
        // Three on the first worker, then the least loaded workers take the rest, three each.
        assert_eq!(workers, [1, 1, 1, 2, 2, 2, 0, 0, 0]);
        // A join that brings the room to a worker links it with the room's others.
        let links: Vec<&[usize]> = joins.iter().map(|r| r.link.as_slice()).collect();
        assert_eq!(links[3], [1]);
        assert_eq!(links[6], [1, 2]);
        assert!(links
            .iter()
            .enumerate()
            .all(|(i, l)| i == 3 || i == 6 || l.is_empty()));
        assert_eq!(p.room_workers("big").unwrap(), [1, 2, 0]);
        assert_eq!(p.room_worker("big").unwrap(), Some(1));
        // Full everywhere: the least loaded worker (0 has one more, of another room) is next.
        assert_eq!(reserve(&mut p, "p9", "big"), 1);
        // Worker 0's participants of the room leave: the last one unlinks it.
        assert_eq!(p.release("p6", now), None);
        assert_eq!(p.release("p7", now), None);
        assert_eq!(
            p.release("p8", now),
            Some(Unlink {
                room: "big".into(),
                worker: 0,
                others: vec![1, 2],
            })
        );
        assert_eq!(p.room_workers("big").unwrap(), [1, 2]);
        for id in ["p0", "p1", "p2"] {
            assert_eq!(p.release(id, now), None);
        }
        assert!(p.release("p9", now).is_some());
        // The room's last worker unlinks nothing.
        for id in ["p3", "p4", "p5"] {
            assert_eq!(p.release(id, now), None);
        }
        assert!(p.room_workers("big").unwrap().is_empty());

        // A player goes to the worker of the publisher it plays, whatever the spreading says.
        let mut p = Placement::new(2).with_limits(limits);
        reserve(&mut p, "ann", "live");
        assert!(p.claim_identity("ann", "ann-identity").is_empty());
        for i in 0..4 {
            reserve(&mut p, &format!("v{i}"), "live");
        }
        let player = p
            .reserve_near("player", "live", Some("ann-identity"), None, now)
            .unwrap();
        assert_eq!(player.worker, p.worker_of("ann").unwrap());
        let nobody = p
            .reserve_near("other", "live", Some("nobody"), None, now)
            .unwrap();
        assert_eq!(nobody.worker, 1, "no such identity: placed as any join");
        // A player that came first: its publisher joins where it waits.
        let early = p
            .reserve_near("early", "live", Some("bob-identity"), None, now)
            .unwrap();
        let plain = reserve(&mut p, "probe", "live");
        p.release("probe", now);
        assert_ne!(
            plain, early.worker,
            "a plain join would go to the other worker"
        );
        let bob = p
            .reserve_near("bob", "live", None, Some("bob-identity"), now)
            .unwrap();
        assert_eq!(bob.worker, early.worker);

        // Spreading off: a room stays on its worker.
        let mut p = Placement::new(2).with_limits(Limits {
            room_participants_per_worker: 0,
            ..Limits::default()
        });
        for i in 0..5 {
            assert_eq!(reserve(&mut p, &format!("q{i}"), "big"), 0);
        }
    }

    #[test]
    fn limits_auto_create_and_conflicts() {
        let now = Instant::now();
        let mut p = Placement::with_defaults(
            1,
            RoomDefaults {
                auto_create: false,
                ..RoomDefaults::default()
            },
        );
        let code = |r: Result<Reservation, SignalError>| r.unwrap_err().code;
        assert_eq!(code(p.reserve("a", "r", now)), ErrorCode::NotFound);
        let req = CreateRoom {
            name: "r".into(),
            max_participants: Some(1),
            empty_timeout: Some(5),
            metadata: Some("m".into()),
            video_codecs: None,
            region: None,
        };
        let info = p.create(&req, now).unwrap();
        assert_eq!((info.max_participants, info.empty_timeout), (1, 5));
        assert_eq!(p.create(&req, now).unwrap_err().code, ErrorCode::Conflict);
        let r = p.reserve("a", "r", now).unwrap();
        assert_eq!((r.created, r.metadata.as_str()), (None, "m"));
        assert_eq!(code(p.reserve("b", "r", now)), ErrorCode::RoomFull);
        assert_eq!(p.info("r").unwrap().num_participants, 1);
        assert_eq!(p.worker_in_room("a", "r"), Some(0));
        assert_eq!(p.worker_in_room("a", "other"), None);
    }

    #[test]
    fn empty_rooms_close_after_their_timeout_and_late_leavers_do_not_count() {
        let t0 = Instant::now();
        let mut p = Placement::new(1);
        let created = p.reserve("a", "r", t0).unwrap().created.unwrap();
        assert_eq!(created.num_participants, 0);
        assert!(p.close_expired(t0 + Duration::from_secs(1000)).is_empty());
        p.release("a", t0);
        assert!(p.close_expired(t0 + Duration::from_secs(299)).is_empty());
        let closed = p.close_expired(t0 + Duration::from_secs(300));
        assert_eq!(closed.len(), 1);
        assert!(!closed[0].1, "a room of this node's own");
        assert!(p.info("r").is_err());

        // A deleted room's participant leaves after a new room of that name was made.
        reserve(&mut p, "b", "r");
        p.remove("r");
        reserve(&mut p, "c", "r");
        p.release("b", t0);
        assert_eq!(p.info("r").unwrap().num_participants, 1);
        assert_eq!(p.load(), &[1]);
    }
}
