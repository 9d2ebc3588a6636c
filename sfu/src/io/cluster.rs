//! Several servers as one service, with Redis as the shared state (see `docs/cluster.md`).
//!
//! Each node keeps an entry in a registry (`sfu:node:{id}`: its signalling URL, region and load)
//! that expires unless refreshed, and refreshes it every second. A room belongs to one node at a
//! time (`sfu:room:{name}` holds the owner's id, also expiring unless the owner refreshes it):
//! the first join of a room, through any node, claims it atomically (`SET NX`) for the least
//! loaded live node, and every later join is sent there. A join that arrives at another node is
//! answered with `redirect` to the owner's URL, which the client follows; media then flows
//! between the client and the owner only. A room whose owner is gone (its entry expired) or
//! draining is taken over with a compare-and-set, so that nothing in Redis points at a dead node
//! for longer than the time to live.
//!
//! Nothing on the media path touches Redis: only joins (one `GET`, at most a `SET` on a room's
//! first join) and the once-a-second refresh.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::{Deserialize, Serialize};
use signal::protocol::{ErrorCode, SignalError};
use tracing::{info, warn};

use super::rooms::Placement;

/// A node whose entry has not been refreshed for this long is gone; so is a room whose owner
/// has not refreshed it.
pub const TTL: Duration = Duration::from_secs(5);
/// How often a node refreshes its entry and its rooms, and reads the others'.
pub const REFRESH: Duration = Duration::from_secs(1);
/// The longest a Redis command may take before the store counts as unavailable.
const COMMAND_TIMEOUT: Duration = Duration::from_millis(1000);
/// How much of each new CPU reading goes into the smoothed one (a time constant of about two
/// refreshes), so that one busy second does not send a room's joins elsewhere.
const CPU_SMOOTHING: f64 = 0.4;
/// Rounds of read, claim and retry before a join gives up on placing its room.
const PLACE_ROUNDS: usize = 4;

const NODES_SET: &str = "sfu:nodes";

fn node_key(id: &str) -> String {
    format!("sfu:node:{id}")
}

fn room_key(room: &str) -> String {
    format!("sfu:room:{room}")
}

/// The nodes that serve a room spanning nodes, each with its participants of it, and the
/// room's participant limit under [`LIMIT_FIELD`].
fn members_key(room: &str) -> String {
    format!("sfu:room:{room}:nodes")
}

/// The rooms other nodes sent joins to this node for (each counted in the room's
/// [`members_key`] before the client arrived).
fn pending_key(node: &str) -> String {
    format!("sfu:node:{node}:pending")
}

/// A room another node sent a join here for, which this node still does not serve after this
/// long (the client went away instead of following its redirect), loses the count that join
/// added, so that a join that never came does not fill the room.
const PENDING_GRACE: Duration = Duration::from_secs(3);

/// Remembers when this node first saw each room other nodes counted a join here for (`pending`,
/// as Redis now lists it), and forgets the rooms no longer listed. A room keeps the time it was
/// first seen until the refresh that finds it past [`PENDING_GRACE`] takes it off the list:
/// stamping it again would start its grace over, and a join that never came could fill the
/// room for as long as that repeats.
fn note_pending(seen: &mut HashMap<String, Instant>, pending: Vec<String>, now: Instant) {
    seen.retain(|room, _| pending.contains(room));
    for room in pending {
        seen.entry(room).or_insert(now);
    }
}

/// The field of [`members_key`] that holds the room's `max_participants` (0: none), which
/// every node serving the room writes: no node id has a `#` in it.
const LIMIT_FIELD: &str = "#limit";

/// For every room key in `KEYS` (rooms this node has): `PEXPIRE` it for `ARGV[2]` ms if it
/// still names this node (`ARGV[1]`); claim it if it is missing (Redis lost its data, or the
/// key expired while Redis was unreachable). A room another node took over is left alone.
/// Returns how many it refreshed or claimed.
const REFRESH_ROOMS: &str = r"
local n = 0
for _, key in ipairs(KEYS) do
  local owner = redis.call('GET', key)
  if owner == ARGV[1] then
    redis.call('PEXPIRE', key, ARGV[2])
    n = n + 1
  elseif not owner then
    redis.call('SET', key, ARGV[1], 'PX', ARGV[2])
    n = n + 1
  end
end
return n";

/// Moves a room from `ARGV[1]` (a gone or draining owner) to `ARGV[2]` for `ARGV[3]` ms, only
/// if it still belongs to `ARGV[1]`.
const TAKE_OVER: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0";

/// Deletes a room key only if it still names `ARGV[1]`.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0";

/// `[cluster]`: how this node takes part in a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSettings {
    /// The Redis server, `redis://host:port/db`.
    pub redis_url: String,
    /// This node's id: unique in the cluster.
    pub node_id: String,
    /// A region label; joins that name a region prefer its nodes.
    pub region: String,
    /// The base URL clients reach this node's HTTP and WebSocket at (`http://10.0.0.2:8080`).
    pub public_url: String,
    /// The media addresses clients reach this node at (advertised IPs and worker ports, UDP; the
    /// same ports take ICE-TCP when it is on).
    pub media: Vec<std::net::SocketAddr>,
    /// The secret relay connections between nodes are authenticated with; `None`: rooms never
    /// span nodes.
    pub secret: Option<String>,
    /// Participants of one room this node takes before the room's next joins go to another
    /// node (0: no limit).
    pub room_participants_per_node: usize,
    /// CPU use (percent of one core, smoothed) at which this node is `busy` (0: never).
    pub max_cpu_percent: u32,
}

/// One node as the registry describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeEntry {
    /// Its id.
    pub id: String,
    /// Its region label.
    pub region: String,
    /// The base URL of its HTTP and WebSocket.
    pub url: String,
    /// Its media addresses (`ip:port`, UDP and ICE-TCP).
    #[serde(default)]
    pub media: Vec<std::net::SocketAddr>,
    /// CPU it used over the last refresh interval, in cores (1.5: one and a half cores busy).
    #[serde(default)]
    pub cpu: f64,
    /// Participants on it.
    pub participants: usize,
    /// Rooms on it.
    pub rooms: usize,
    /// Shutting down: it takes no new rooms.
    pub draining: bool,
    /// At its participant limit (`limits.max_participants`, or every worker at its own): it
    /// takes no new rooms, and its rooms refuse joins until someone leaves.
    #[serde(default)]
    pub full: bool,
    /// At its CPU limit (`cluster.max_cpu_percent`): while other nodes are not, it takes no new
    /// rooms, and the next joins of its rooms go to other nodes, which relay them.
    #[serde(default)]
    pub busy: bool,
}

impl NodeEntry {
    /// The WebSocket URL of the node's signalling.
    pub fn ws_url(&self) -> String {
        ws_url(&self.url)
    }
}

/// `http://h:p` -> `ws://h:p/ws`, `https://` -> `wss://`.
pub fn ws_url(base: &str) -> String {
    let base = base.trim_end_matches('/');
    let rest = base
        .strip_prefix("https://")
        .map(|r| format!("wss://{r}"))
        .or_else(|| base.strip_prefix("http://").map(|r| format!("ws://{r}")))
        .unwrap_or_else(|| base.to_owned());
    format!("{rest}/ws")
}

/// Where a join of a room goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// This node has (or now owns) the room.
    Here,
    /// Another node owns it: the client is sent there.
    There {
        /// The owner's id.
        node: String,
        /// The owner's signalling WebSocket URL.
        url: String,
    },
}

/// The least loaded node that can take a new room (not draining, not full), preferring `region`
/// when some such node is in it: fewest participants, then fewest rooms, then id (so that all
/// nodes agree).
pub fn choose<'a>(nodes: &'a [NodeEntry], region: Option<&str>) -> Option<&'a NodeEntry> {
    let calm: Vec<NodeEntry> = nodes.iter().filter(|n| !n.busy).cloned().collect();
    let chosen = choose_among(&calm, region).map(|n| n.id.clone());
    match chosen {
        Some(id) => nodes.iter().find(|n| n.id == id),
        None => choose_among(nodes, region),
    }
}

/// [`choose`] without regard to `busy`.
fn choose_among<'a>(nodes: &'a [NodeEntry], region: Option<&str>) -> Option<&'a NodeEntry> {
    let open = || nodes.iter().filter(|n| !n.draining && !n.full);
    let in_region: Vec<&NodeEntry> = match region {
        Some(r) if !r.is_empty() => open().filter(|n| n.region == r).collect(),
        _ => Vec::new(),
    };
    let pool: Vec<&NodeEntry> = if in_region.is_empty() {
        open().collect()
    } else {
        in_region
    };
    pool.into_iter()
        .min_by(|a, b| (a.participants, a.rooms, &a.id).cmp(&(b.participants, b.rooms, &b.id)))
}

/// Where a join of a room that already has a live owner goes when rooms may span nodes:
/// `members` are the nodes serving it (ids and their participants of it), `nodes` every live
/// node, `limit` the participants of one room a node takes (0: no limit).
///
/// A named region with open nodes of its own is served in it: by its member with the fewest
/// participants of the room under the limit, else by its least loaded node, which joins the
/// room. Otherwise the owner takes the join while under the limit, then the member with the
/// fewest participants of the room under it, then the least loaded node that is not a member
/// yet. `None`: the owner (every node is full, or it is the only one).
///
/// Busy nodes (at their CPU limit) are left out while that leaves a node to take the join.
pub fn choose_member<'a>(
    owner: &str,
    members: &[(String, usize)],
    nodes: &'a [NodeEntry],
    region: Option<&str>,
    limit: usize,
) -> Option<&'a NodeEntry> {
    let calm: Vec<NodeEntry> = nodes.iter().filter(|n| !n.busy).cloned().collect();
    let chosen = choose_member_among(owner, members, &calm, region, limit).map(|n| n.id.clone());
    match chosen {
        Some(id) => nodes.iter().find(|n| n.id == id),
        None => choose_member_among(owner, members, nodes, region, limit),
    }
}

/// [`choose_member`] without regard to `busy`.
fn choose_member_among<'a>(
    owner: &str,
    members: &[(String, usize)],
    nodes: &'a [NodeEntry],
    region: Option<&str>,
    limit: usize,
) -> Option<&'a NodeEntry> {
    let open = |id: &str| nodes.iter().find(|n| n.id == id && !n.draining && !n.full);
    let under = |count: usize| limit == 0 || count < limit;
    let region = region.filter(|r| !r.is_empty());
    let in_region = |n: &NodeEntry| region.is_none_or(|r| n.region == r);
    let roomy = |pred: &dyn Fn(&NodeEntry) -> bool| {
        members
            .iter()
            .filter(|(_, count)| under(*count))
            .filter_map(|(id, count)| open(id).filter(|n| pred(n)).map(|n| (n, *count)))
            .min_by(|a, b| (a.1, &a.0.id).cmp(&(b.1, &b.0.id)))
            .map(|(n, _)| n)
    };
    let others = || {
        nodes
            .iter()
            .filter(|n| !members.iter().any(|(id, _)| *id == n.id))
            .cloned()
            .collect::<Vec<_>>()
    };
    if region.is_some() && nodes.iter().any(|n| !n.draining && !n.full && in_region(n)) {
        if let Some(n) = roomy(&in_region) {
            return Some(n);
        }
        let fresh = others();
        if let Some(n) = choose(&fresh, region).filter(|n| in_region(n)) {
            return nodes.iter().find(|m| m.id == n.id);
        }
    }
    let owner_count = members
        .iter()
        .find(|(id, _)| id == owner)
        .map_or(0, |(_, c)| *c);
    if let Some(n) = open(owner).filter(|_| under(owner_count)) {
        return Some(n);
    }
    if let Some(n) = roomy(&|_| true) {
        return Some(n);
    }
    let fresh = others();
    let n = choose(&fresh, None)?;
    nodes.iter().find(|m| m.id == n.id)
}

/// A join refused because a room spanning nodes has `max_participants` (0: no limit) over all
/// of them (`members`: each node's count).
fn room_full(members: &[(String, usize)], max_participants: u32) -> Option<SignalError> {
    let total: usize = members.iter().map(|(_, n)| n).sum();
    (max_participants > 0 && total >= max_participants as usize).then(|| {
        SignalError::new(
            ErrorCode::RoomFull,
            format!("the room is at its limit of {max_participants} participants"),
        )
    })
}

/// What this node knows of the cluster, from its last refresh.
#[derive(Debug, Default)]
struct View {
    /// The other live nodes, by id.
    others: HashMap<String, NodeEntry>,
    /// Whether the last refresh reached Redis.
    healthy: bool,
    /// When Redis was last reached.
    last_ok: Option<Instant>,
}

/// This node's part in the cluster.
pub struct Cluster {
    settings: ClusterSettings,
    redis: ConnectionManager,
    placement: Arc<Mutex<Placement>>,
    view: Mutex<View>,
    /// The process's CPU time at the last refresh, and the cores used over the interval before.
    cpu: Mutex<CpuSample>,
    /// The rooms this node said it serves at the last refresh.
    member_of: Mutex<Vec<String>>,
    /// Rooms another node counted a join here for that this node does not serve, with when
    /// this node first saw each (see [`PENDING_GRACE`]).
    pending: Mutex<HashMap<String, Instant>>,
}

#[derive(Debug, Default)]
struct CpuSample {
    last: Option<(Instant, f64)>,
    cores: f64,
    /// An interval has been measured (the first, which holds the start-up, is not smoothed).
    measured: bool,
    /// `cores` smoothed over the last few readings, for `busy`; the first interval, which holds
    /// the process's start-up, is left out.
    smoothed: Option<f64>,
}

impl CpuSample {
    /// Takes a new reading of the process's CPU time.
    fn update(&mut self) {
        if let Some(cpu) = super::process::cpu_seconds() {
            self.record(Instant::now(), cpu);
        }
    }

    /// The process had used `cpu` seconds of CPU at `now`.
    fn record(&mut self, now: Instant, cpu: f64) {
        if let Some((then, then_cpu)) = self.last {
            let wall = now.duration_since(then).as_secs_f64();
            if wall > 0.0 {
                self.cores = ((cpu - then_cpu) / wall).max(0.0);
                if std::mem::replace(&mut self.measured, true) {
                    self.smoothed = Some(match self.smoothed {
                        Some(s) => s + CPU_SMOOTHING * (self.cores - s),
                        None => self.cores,
                    });
                }
            }
        }
        self.last = Some((now, cpu));
    }

    /// Whether the smoothed use is at `limit_percent` of one core (0: no limit).
    fn busy(&self, limit_percent: u32) -> bool {
        limit_percent > 0
            && self
                .smoothed
                .is_some_and(|s| s * 100.0 >= f64::from(limit_percent))
    }
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

fn unavailable(e: &redis::RedisError) -> SignalError {
    warn!(error = %e, "cluster store unavailable");
    SignalError::new(
        ErrorCode::ServerBusy,
        "the cluster's shared store is unavailable; try again shortly",
    )
}

impl Cluster {
    /// Joins the cluster described by `settings`. Does not wait for Redis: until it is reached
    /// the node is not ready and joins that need the cluster are refused.
    pub fn new(
        settings: ClusterSettings,
        placement: Arc<Mutex<Placement>>,
    ) -> Result<Arc<Cluster>, String> {
        let client = redis::Client::open(settings.redis_url.as_str())
            .map_err(|e| format!("cluster.redis_url {:?}: {e}", settings.redis_url))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(COMMAND_TIMEOUT))
            .set_response_timeout(Some(COMMAND_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(2));
        let redis = client
            .get_connection_manager_lazy(config)
            .map_err(|e| format!("cluster.redis_url {:?}: {e}", settings.redis_url))?;
        Ok(Arc::new(Cluster {
            settings,
            redis,
            placement,
            view: Mutex::new(View::default()),
            cpu: Mutex::new(CpuSample::default()),
            member_of: Mutex::new(Vec::new()),
            pending: Mutex::new(HashMap::new()),
        }))
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.settings.node_id
    }

    /// Whether the shared store answered at the last refresh.
    pub fn healthy(&self) -> bool {
        self.view.lock().healthy
    }

    /// The other live nodes, as of the last refresh.
    pub fn others(&self) -> Vec<NodeEntry> {
        let mut nodes: Vec<NodeEntry> = self.view.lock().others.values().cloned().collect();
        nodes.sort_by(|a, b| a.id.cmp(&b.id));
        nodes
    }

    /// This node's own entry, from its placement now.
    pub fn own_entry(&self) -> NodeEntry {
        let (cpu, busy) = {
            let sample = self.cpu.lock();
            (sample.cores, sample.busy(self.settings.max_cpu_percent))
        };
        let p = self.placement.lock();
        NodeEntry {
            id: self.settings.node_id.clone(),
            region: self.settings.region.clone(),
            url: self.settings.public_url.clone(),
            media: self.settings.media.clone(),
            cpu: (cpu * 100.0).round() / 100.0,
            participants: p.total(),
            rooms: p.room_count(),
            draining: p.is_draining(),
            full: !p.is_draining() && !p.accepting(),
            busy,
        }
    }

    /// Runs the refresh every [`REFRESH`] on the current tokio runtime.
    pub fn spawn_refresh(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let cluster = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(REFRESH);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                cluster.refresh().await;
            }
        })
    }

    /// Writes this node's entry, refreshes the rooms it owns and reads the other nodes.
    pub async fn refresh(&self) {
        let result = self.try_refresh().await;
        let mut view = self.view.lock();
        match result {
            Ok(others) => {
                if !view.healthy {
                    info!(
                        node = %self.settings.node_id,
                        nodes = others.len() + 1,
                        "cluster store reached"
                    );
                }
                view.healthy = true;
                view.last_ok = Some(Instant::now());
                view.others = others.into_iter().map(|n| (n.id.clone(), n)).collect();
            }
            Err(e) => {
                if view.healthy || view.last_ok.is_none() {
                    warn!(
                        error = %e,
                        url = %self.settings.redis_url,
                        "cluster store unavailable: not ready; running rooms go on"
                    );
                }
                view.healthy = false;
                // Entries older than the time to live are gone in Redis too.
                if view.last_ok.is_none_or(|t| t.elapsed() > TTL) {
                    view.others.clear();
                }
            }
        }
    }

    async fn try_refresh(&self) -> redis::RedisResult<Vec<NodeEntry>> {
        self.cpu.lock().update();
        let me = self.own_entry();
        let list = self.placement.lock().list();
        let rooms: Vec<String> = list.iter().map(|r| room_key(&r.name)).collect();
        let ttl_ms = TTL.as_millis() as u64;
        let mut conn = self.redis.clone();
        let json = serde_json::to_string(&me).unwrap_or_default();
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(node_key(&me.id))
            .arg(json)
            .arg("PX")
            .arg(ttl_ms)
            .ignore()
            .cmd("SADD")
            .arg(NODES_SET)
            .arg(&me.id)
            .ignore();
        if !rooms.is_empty() {
            pipe.cmd("EVAL")
                .arg(REFRESH_ROOMS)
                .arg(rooms.len())
                .arg(&rooms)
                .arg(&me.id)
                .arg(ttl_ms)
                .ignore();
        }
        if self.relays() {
            // This node's part in each of its rooms, for joins deciding where a room's next
            // participant goes; rooms it no longer has drop it.
            let mut gone = std::mem::take(&mut *self.member_of.lock());
            for r in &list {
                gone.retain(|g| *g != r.name);
                pipe.cmd("HSET")
                    .arg(members_key(&r.name))
                    .arg(&me.id)
                    .arg(r.num_participants)
                    .arg(LIMIT_FIELD)
                    .arg(r.max_participants)
                    .ignore()
                    .cmd("PEXPIRE")
                    .arg(members_key(&r.name))
                    .arg(ttl_ms)
                    .ignore();
            }
            // Joins other nodes counted here: served now, or never came.
            let now = Instant::now();
            for (room, seen) in self.pending.lock().iter() {
                let served = list.iter().any(|r| r.name == *room);
                if !served && now.duration_since(*seen) >= PENDING_GRACE {
                    gone.push(room.clone());
                }
                if served || now.duration_since(*seen) >= PENDING_GRACE {
                    pipe.cmd("SREM").arg(pending_key(&me.id)).arg(room).ignore();
                }
            }
            for g in &gone {
                pipe.cmd("HDEL").arg(members_key(g)).arg(&me.id).ignore();
            }
            *self.member_of.lock() = list.iter().map(|r| r.name.clone()).collect();
        }
        pipe.cmd("SMEMBERS").arg(NODES_SET);
        pipe.cmd("SMEMBERS").arg(pending_key(&me.id));
        let (ids, pending): (Vec<String>, Vec<String>) = pipe.query_async(&mut conn).await?;
        if self.relays() {
            note_pending(&mut self.pending.lock(), pending, Instant::now());
        }
        let others: Vec<String> = ids.into_iter().filter(|id| *id != me.id).collect();
        if others.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = others.iter().map(|id| node_key(id)).collect();
        let values: Vec<Option<String>> =
            redis::cmd("MGET").arg(&keys).query_async(&mut conn).await?;
        let mut live = Vec::new();
        let mut gone = Vec::new();
        for (id, value) in others.into_iter().zip(values) {
            match value.and_then(|v| serde_json::from_str::<NodeEntry>(&v).ok()) {
                Some(entry) => live.push(entry),
                None => gone.push(id),
            }
        }
        if !gone.is_empty() {
            // Their entries expired: the set forgets them too.
            let _: redis::RedisResult<i64> = redis::cmd("SREM")
                .arg(NODES_SET)
                .arg(&gone)
                .query_async(&mut conn)
                .await;
        }
        Ok(live)
    }

    /// Where a join of `room` goes: here, or the node that owns it. `exists_here`: the room is
    /// on this node already; without Redis such a room still takes joins (running rooms keep
    /// running), any other is refused with `server_busy`.
    pub async fn place(
        &self,
        room: &str,
        region: Option<&str>,
        exists_here: bool,
    ) -> Result<Place, SignalError> {
        match self.try_place(room, region).await {
            Ok(place) => place,
            Err(e) if exists_here => {
                warn!(error = %e, room, "cluster store unavailable: the room is here, admitting");
                Ok(Place::Here)
            }
            Err(e) => Err(unavailable(&e)),
        }
    }

    async fn try_place(
        &self,
        room: &str,
        region: Option<&str>,
    ) -> redis::RedisResult<Result<Place, SignalError>> {
        let key = room_key(room);
        let me = self.settings.node_id.clone();
        let ttl_ms = TTL.as_millis() as u64;
        let mut conn = self.redis.clone();
        for _ in 0..PLACE_ROUNDS {
            let owner: Option<String> = redis::cmd("GET").arg(&key).query_async(&mut conn).await?;
            let mut nodes = self.others();
            let own = self.own_entry();
            nodes.push(own.clone());
            match owner {
                Some(owner) if owner == me && !own.draining => {
                    let _: i64 = redis::cmd("PEXPIRE")
                        .arg(&key)
                        .arg(ttl_ms)
                        .query_async(&mut conn)
                        .await?;
                    if self.relays() {
                        return self.place_member(room, &owner, &nodes, region).await;
                    }
                    return Ok(Ok(Place::Here));
                }
                Some(owner) => {
                    if let Some(n) = nodes.iter().find(|n| n.id == owner && !n.draining) {
                        if self.relays() {
                            return self.place_member(room, &owner, &nodes, region).await;
                        }
                        return Ok(Ok(self.place_on(n)));
                    }
                    // Its owner is gone or draining: move the room, unless someone else just did.
                    let Some(target) = choose(&nodes, region) else {
                        return Ok(Err(no_node()));
                    };
                    let moved: i64 = redis::cmd("EVAL")
                        .arg(TAKE_OVER)
                        .arg(1)
                        .arg(&key)
                        .arg(&owner)
                        .arg(&target.id)
                        .arg(ttl_ms)
                        .query_async(&mut conn)
                        .await?;
                    if moved == 1 {
                        info!(room, from = %owner, to = %target.id, "room moved to a live node");
                        return Ok(Ok(self.place_on(target)));
                    }
                }
                None => {
                    let Some(target) = choose(&nodes, region) else {
                        return Ok(Err(no_node()));
                    };
                    let claimed: Option<String> = redis::cmd("SET")
                        .arg(&key)
                        .arg(&target.id)
                        .arg("NX")
                        .arg("PX")
                        .arg(ttl_ms)
                        .query_async(&mut conn)
                        .await?;
                    if claimed.is_some() {
                        info!(room, node = %target.id, "room placed");
                        if self.relays() {
                            self.count_member(room, &target.id).await?;
                        }
                        return Ok(Ok(self.place_on(target)));
                    }
                }
            }
        }
        Ok(Err(SignalError::new(
            ErrorCode::ServerBusy,
            "the room's placement is changing; try again",
        )))
    }

    /// Whether rooms may span nodes (a cluster secret is set).
    pub fn relays(&self) -> bool {
        self.settings.secret.is_some()
    }

    /// The cluster settings.
    pub fn settings(&self) -> &ClusterSettings {
        &self.settings
    }

    /// The live nodes serving `room` and their participants of it (this node's from its
    /// placement), as Redis says.
    pub async fn members(&self, room: &str) -> redis::RedisResult<Vec<(String, usize)>> {
        Ok(self.room_members(room).await?.0)
    }

    /// [`Cluster::members`], and the room's participant limit over all its nodes (0: none):
    /// this node's own setting when it serves the room, else what its nodes last wrote.
    async fn room_members(&self, room: &str) -> redis::RedisResult<(Vec<(String, usize)>, u32)> {
        let mut conn = self.redis.clone();
        let all: Vec<(String, String)> = redis::cmd("HGETALL")
            .arg(members_key(room))
            .query_async(&mut conn)
            .await?;
        let me = &self.settings.node_id;
        let here = self.placement.lock().info(room).ok();
        let limit = match &here {
            Some(info) => info.max_participants,
            None => all
                .iter()
                .find(|(field, _)| field == LIMIT_FIELD)
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0),
        };
        let here = here.map(|info| info.num_participants as usize);
        let view = self.view.lock();
        let mut members: Vec<(String, usize)> = all
            .into_iter()
            .filter(|(id, _)| id == me || view.others.contains_key(id))
            .map(|(id, n)| {
                let n = if id == *me {
                    here.unwrap_or(0)
                } else {
                    n.parse::<i64>().unwrap_or(0).max(0) as usize
                };
                (id, n)
            })
            .collect();
        if let Some(n) = here {
            if !members.iter().any(|(id, _)| id == me) {
                members.push((me.clone(), n));
            }
        }
        members.sort();
        Ok((members, limit))
    }

    /// Where a join of `room`, whose live owner is `owner`, goes when rooms may span nodes
    /// ([`choose_member`]).
    async fn place_member(
        &self,
        room: &str,
        owner: &str,
        nodes: &[NodeEntry],
        region: Option<&str>,
    ) -> redis::RedisResult<Result<Place, SignalError>> {
        let (members, max_participants) = self.room_members(room).await?;
        if let Some(e) = room_full(&members, max_participants) {
            return Ok(Err(e));
        }
        let limit = self.settings.room_participants_per_node;
        let target = choose_member(owner, &members, nodes, region, limit)
            .or_else(|| nodes.iter().find(|n| n.id == owner));
        let Some(target) = target else {
            return Ok(Ok(Place::Here));
        };
        if !members.iter().any(|(id, _)| *id == target.id) {
            info!(room, node = %target.id, "room spans one more node");
        }
        let here = members
            .iter()
            .find(|(id, _)| *id == self.settings.node_id)
            .map(|(_, n)| *n);
        match here.filter(|_| target.id == self.settings.node_id) {
            // This node's own count, true now: its participants and this join. (A join another
            // node sent here was counted there already; adding to that would count it twice.)
            Some(n) => self.set_member_count(room, n + 1, max_participants).await?,
            None => self.count_member(room, &target.id).await?,
        }
        Ok(Ok(self.place_on(target)))
    }

    /// One more participant of `room` is on its way to `node`: its count goes up now, so that
    /// concurrent joins see it before the node's next refresh sets the true count.
    async fn count_member(&self, room: &str, node: &str) -> redis::RedisResult<()> {
        let mut conn = self.redis.clone();
        let key = members_key(room);
        redis::pipe()
            .cmd("HINCRBY")
            .arg(&key)
            .arg(node)
            .arg(1)
            .ignore()
            .cmd("PEXPIRE")
            .arg(&key)
            .arg(TTL.as_millis() as u64)
            .ignore()
            .cmd("SADD")
            .arg(pending_key(node))
            .arg(room)
            .ignore()
            .cmd("PEXPIRE")
            .arg(pending_key(node))
            .arg(2 * TTL.as_millis() as u64)
            .ignore()
            .query_async::<()>(&mut conn)
            .await
    }

    /// This node has `n` participants of `room` (with one on its way in), whose limit is
    /// `max_participants`.
    async fn set_member_count(
        &self,
        room: &str,
        n: usize,
        max_participants: u32,
    ) -> redis::RedisResult<()> {
        let mut conn = self.redis.clone();
        let key = members_key(room);
        redis::pipe()
            .cmd("HSET")
            .arg(&key)
            .arg(&self.settings.node_id)
            .arg(n)
            .arg(LIMIT_FIELD)
            .arg(max_participants)
            .ignore()
            .cmd("PEXPIRE")
            .arg(&key)
            .arg(TTL.as_millis() as u64)
            .ignore()
            .query_async::<()>(&mut conn)
            .await
    }

    /// The node that serves `room` now, as Redis says; `None` when no node does. Claims nothing.
    pub async fn owner(&self, room: &str) -> redis::RedisResult<Option<String>> {
        let mut conn = self.redis.clone();
        redis::cmd("GET")
            .arg(room_key(room))
            .query_async(&mut conn)
            .await
    }

    /// The WebSocket URL of the live node that serves `room`, when that is another node; `None`
    /// when this node does, no node does, or Redis does not answer. Claims nothing.
    pub async fn elsewhere(&self, room: &str) -> Option<String> {
        let owner = self.owner(room).await.ok()??;
        if owner == self.settings.node_id {
            return None;
        }
        self.node(&owner).map(|n| n.ws_url())
    }

    /// Another live node, by id, as of the last refresh.
    pub fn node(&self, id: &str) -> Option<NodeEntry> {
        self.view.lock().others.get(id).cloned()
    }

    fn place_on(&self, node: &NodeEntry) -> Place {
        if node.id == self.settings.node_id {
            Place::Here
        } else {
            Place::There {
                node: node.id.clone(),
                url: node.ws_url(),
            }
        }
    }

    /// Gives up the rooms this node owns and its entry (at shutdown). Best effort.
    pub async fn leave(&self) {
        let rooms: Vec<String> = self
            .placement
            .lock()
            .list()
            .into_iter()
            .map(|r| r.name)
            .collect();
        let mut conn = self.redis.clone();
        for room in rooms {
            let _: redis::RedisResult<i64> = redis::cmd("EVAL")
                .arg(RELEASE)
                .arg(1)
                .arg(room_key(&room))
                .arg(&self.settings.node_id)
                .query_async(&mut conn)
                .await;
        }
        let _: redis::RedisResult<i64> = redis::cmd("DEL")
            .arg(node_key(&self.settings.node_id))
            .query_async(&mut conn)
            .await;
        let _: redis::RedisResult<i64> = redis::cmd("SREM")
            .arg(NODES_SET)
            .arg(&self.settings.node_id)
            .query_async(&mut conn)
            .await;
    }

    /// The origins of the other nodes, for the page's `connect-src`: `http://h:p ws://h:p`.
    pub fn connect_sources(&self) -> String {
        let mut out = String::new();
        for n in self.others() {
            let base = n.url.trim_end_matches('/');
            let ws = ws_url(base);
            let ws_origin = ws.trim_end_matches("/ws");
            out.push(' ');
            out.push_str(base);
            out.push(' ');
            out.push_str(ws_origin);
        }
        out
    }
}

fn no_node() -> SignalError {
    SignalError::new(
        ErrorCode::ServerBusy,
        "no node of the cluster can take a new room now",
    )
}

#[cfg(test)]
mod tests;
