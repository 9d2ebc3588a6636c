/**
 * Browser client for the SFU: one WebSocket for signalling, one RTCPeerConnection for all media.
 *
 * The npm package `sfu-client` (the `client/` folder of the repository) publishes this file as it
 * is, with TypeScript declarations in `sfu-client.d.ts`; every server also serves it at
 * `/client.js`.
 *
 * ```js
 * import { SfuClient } from 'sfu-client'; // or '/client.js' from the server
 * const client = new SfuClient();
 * client.addEventListener('remote-stream', (e) => attach(e.detail.participantId, e.detail.stream));
 * client.addEventListener('participants-changed', () => render(client.participants));
 * client.addEventListener('error', (e) => show(e.detail.code, e.detail.message));
 * client.addEventListener('left', (e) => console.info('session over:', e.detail.reason));
 * await client.join({ room: 'demo', name: 'Ann' });
 * // ...
 * client.leave();
 * ```
 *
 * The call order of one session:
 * 1. `join()` captures the camera and microphone (unless a `stream` is given), opens the WebSocket
 *    and sends `join`. The server answers `joined`.
 * 2. The client creates the peer connection, adds its tracks as `sendonly` transceivers and sends
 *    its `offer`; the server sends the `answer`. Candidates are trickled both ways.
 * 3. Whenever remote tracks come or go, the server sends an `offer`; the client answers it. The
 *    server is the polite side: an offer from the server that arrives while the client's own offer
 *    is outstanding is ignored, and the server offers again after answering.
 * 4. `leave()` or a `left` message ends the session: `left` is emitted once.
 *
 * Network changes: when nothing has arrived on the peer connection for 1.5 s although something
 * should have (the server sends transport feedback for the own media and the others' media), or
 * ICE reports `disconnected` for 2 s, or `failed`, the client offers an ICE restart on the same
 * peer connection (new ICE credentials, same tracks), again every 3 s until it is connected. After
 * such a stall it also resumes the session on a second WebSocket at once, keeping the first until
 * the second works (the first has probably gone down with the network, unnoticed). The server
 * accepts checks from the new address only with the new credentials.
 *
 * Reconnect: the client sends a `ping` every 5 s and takes the WebSocket as lost when it closes,
 * fails, brings nothing for 12 s, or leaves a `ping` unanswered for 2 s after the media stalled
 * (whatever cut the media may have cut the socket too). It then emits
 * `reconnecting`, opens new sockets with backoff (0.5 s, doubling up to 4 s) and sends `resume`
 * with the secret from `joined`, for as long as the server's grace period lasts. On `resumed` it
 * emits `reconnected` and goes on with the same participant, tracks and peer connection (messages
 * the server held meanwhile arrive then). If the grace period runs out without an answer, the
 * session ends with `left` `disconnected`. Other participants who are reconnecting have
 * `reconnecting: true`.
 *
 * Rejoin: a server that answers `resume_failed` (it restarted, or another server now answers at
 * the URL) is joined afresh with the same room, name and token, on a new peer connection with the
 * same local media. A session that a cluster `redirect`ed to another node whose sockets do not
 * even open three times in a row (the node is gone) sends every other `resume` to the URL it
 * joined through instead: that node does not know the session and answers `resume_failed`, so
 * the session is joined afresh through it, and lands on a live node. The same happens to the URL
 * after `shutting_down`, while the old server still carries the
 * call: once a server accepts the join the old session is left (make before break). A draining
 * server refuses joins, so this works when the URL leads to another server once the old one is
 * not ready (a load balancer with health checks, or a cluster). Attempts go on with backoff until
 * the drain ends and 30 s more; the client emits `reconnected` with `rejoined: true` when it
 * is in again (its participant id is new), or ends the session with the server's reason.
 *
 * Every negotiation step (offer, answer, remote candidate) runs on one promise chain, so no two
 * steps ever interleave.
 *
 * Remote media: every publisher is one participant, whose tracks the client gathers into one
 * `MediaStream` per participant (`participants.get(id).stream`). The stream object stays the same
 * for the life of the participant; tracks are added to it and removed from it as the server
 * renegotiates. Which receiver belongs to whom is read from the `a=msid:<participant id> <track id>`
 * lines of the server's SDP after each description is applied, so m-lines the server recycles for
 * another publisher move to the right participant.
 *
 * Simulcast: the camera is published as three layers (`q` quarter, `h` half, `f` full resolution,
 * offered low to high) unless `join({ simulcast: false })`. The server picks one layer per
 * subscriber and tells the publisher which layers somebody needs (`publisher_layers`); the client
 * switches the others off with `RTCRtpSender.setParameters` until they are needed again.
 *
 * Video codec: the browser's own order decides (VP8 first in Chromium) unless
 * `join({ videoCodec: 'h264' })` (or `'vp8'`, `'vp9'`, `'av1'`) puts that codec first with
 * `RTCRtpTransceiver.setCodecPreferences`, the others after it. With `scalabilityMode` (for
 * example `join({ videoCodec: 'vp9', scalabilityMode: 'L3T3_KEY' })`) the camera goes out as one
 * encoding carrying spatial layers (SVC) instead of simulcast. VP9 and AV1 simulcast encodings get
 * `scalabilityMode: 'L1T3'` each, without which Chromium sends only the first. The server answers in the order
 * offered unless the room's policy says otherwise (it may allow one codec only), and the browser
 * sends the first codec of the answer. A browser that cannot send the codec keeps its own order.
 * Subscribers receive what the publisher sends; one that cannot decode it gets `stream-state`
 * `paused` with reason `codec`.
 *
 * Screen share: `shareScreen({ audio, stream, contentHint })` publishes a screen, window or tab (from
 * `getDisplayMedia`, or the `stream` given) next to the camera on the same peer connection: its
 * video with source `screen`, its audio (when the browser gives some) with source `screen_audio`,
 * named per m-line in the client's `offer` (`sources`). The video goes as one full-resolution
 * layer (`SCREEN_SHARE_ENCODING`, at most 15 frames/s) with `contentHint = 'detail'` and
 * `degradationPreference: 'maintain-resolution'`: text scaled down is unreadable, so under
 * constraint the frame rate gives way, not the resolution, and the server serves screen shares
 * before cameras. `stopScreenShare()`, or the browser's own "stop sharing" (the track ends),
 * unpublishes it. Remote screens arrive in `participants.get(id).screenStream`, apart from the
 * participant's camera and microphone in `stream`; `sources` maps each track id to its source.
 *
 * Pin: `pin(participantId)` tells the server (`track_settings` with `pinned`) that this client
 * shows that participant large: its videos get bandwidth before the other cameras (screen shares
 * still come first). `pin(id, false)` takes it back.
 *
 * Remote video size: hand every `<video>` element that shows remote video to `observeVideo()`. The
 * client then tells the server how large (in device pixels) and whether it is on screen, so that
 * the server sends no larger layer than needed and nothing while hidden (a scrolled-away element
 * or a background tab). A track shown in several elements counts with its largest visible one.
 *
 * Data: before its first offer the client opens two data channels on its peer connection,
 * `reliable` (ordered) and `lossy` (unordered, no retransmissions). The server relays what one
 * participant sends on a channel to the channel with the same label of the others, stamped with the
 * sender's id: `sendChat(text)` and `sendData(payload, { to, lossy })` send, the `data` event
 * receives. Text goes as JSON `{"to"?: [ids], "payload": ...}`; an `ArrayBuffer` (or typed array)
 * goes as a binary message to the whole room. The server refuses more than 16 KiB per message and
 * more than about 30 messages per second (bursts of 60), answering with an `error` event
 * (`message_too_large`, `rate_limited`).
 *
 * Mute: `mute('audio' | 'video', true)` disables the own microphone or camera track locally and asks
 * the server to stop forwarding it; the room hears of it as `track-muted`. Per remote participant the
 * muted track ids are in `participants.get(id).muted`.
 *
 * Events (all `CustomEvent`s):
 * - `data`: a data-channel message from another participant. `detail: { from, name, payload,
 *   direct, channel, binary }`: `from` is the sender's id as the server stamped it, `name` its
 *   display name as known here, `payload` the sender's JSON payload (an `ArrayBuffer` for binary
 *   messages), `direct` true when the sender addressed this participant by id, `channel` the label
 *   (`reliable` or `lossy`).
 * - `data-state`: a data channel opened or closed. `detail: { channel, state }` (`open`, `closed`).
 * - `speakers`: who is speaking now, loudest first (empty: nobody); the own id may be among them.
 *   `detail: { speakers }`, each `{ participantId, level }` with `level` 0 to 100. Also kept in
 *   `client.speakers`.
 * - `track-muted`: a track was muted or unmuted (the own ones included). `detail: { participantId,
 *   trackId, kind, muted, local }`; `local` is true for the own tracks.
 * - `local-mute`: the own microphone or camera was muted or unmuted (by `mute()` or by the
 *   server). `detail: { kind, muted }`.
 * - `stream-state`: the server started, paused or switched a remote video. `detail:
 *   { participantId, trackId, state, reason, layer }`: `state` is `active` or `paused`; `reason`
 *   (when paused) is `bandwidth`, `hidden`, `muted`, `publisher` or `codec`; `layer` (when active) is the
 *   simulcast rid received (`q`, `h`, `f`), or null for a single-layer track. The last state per
 *   track is also in `client.streamStates`.
 * - `participants-changed`: someone joined or left, or the local session started or ended.
 *   `detail: { participants }` (the same Map as `client.participants`).
 * - `remote-stream`: the tracks of a participant's streams changed. `detail: { participantId, stream,
 *   screenStream }`: `stream` holds its camera and microphone, `screenStream` its shared screen.
 * - `screen-share`: the own screen share started or ended (`stopScreenShare()`, the browser's own
 *   "stop sharing", or leaving). `detail: { active, stream }` (`stream` null when it ended).
 * - `local-stream`: the local camera/microphone stream is ready. `detail: { stream }`.
 * - `room-updated`: the room's metadata, after `joined` when it has some and whenever the operator
 *   changes it. `detail: { room, metadata }`; also kept in `roomMetadata`.
 * - `connection-state`: the peer connection's `connectionState` changed. `detail: { state }`.
 * - `error`: something failed. `detail: { code, message }`. `code` is one of the server's codes
 *   (`bad_message`, `invalid_name`, `unauthorized`, `room_full`, `server_busy`, `rate_limited`,
 *   `message_too_large`, `forbidden`, `unsupported_codec` (the room does not take the video codec
 *   offered: the camera is not published), ...) or a client code:
 *   `media_denied`, `media_unavailable`, `connection_failed`, `timeout`, `negotiation_failed`,
 *   `ice_failed`.
 * - `reconnecting`: the WebSocket dropped; the client is taking the session up on a new one.
 *   `detail: { closeCode }`. Media keeps flowing meanwhile.
 * - `reconnected`: the session goes on over a new WebSocket. `detail: { rejoined }`: false when the
 *   same session was resumed, true when it was joined afresh (new participant id and peer
 *   connection; the participants are announced again).
 * - `connection-quality`: the server's judgement of a connection changed (loss, delay, silence,
 *   videos that do not fit the bandwidth). `detail: { participantId, quality, local }`: `quality`
 *   is `excellent`, `good`, `poor` or `lost`; `local` is true for this participant's own.
 * - `shutting-down`: the server is shutting down and ends the session in `detail.drainSeconds`;
 *   the client is moving the session to another server meanwhile (see Rejoin above).
 * - `left`: the session ended. `detail: { reason }`: `left` after `leave()`, `disconnected` when the
 *   WebSocket could not be taken up again (`detail.closeCode` then holds the last close code), or
 *   the server's reason (`server_shutdown`, `removed`, `room_deleted`, `timeout`, ...).
 *
 * @module client
 */

/** The protocol version this client speaks. */
export const PROTOCOL_VERSION = 1;

/** The version of this client: the `sfu-client` package's, the same as the server's release. */
export const VERSION = '0.1.0';

/** Media asked for when `join()` is given neither `stream` nor `media`. */
export const DEFAULT_MEDIA = Object.freeze({
  audio: true,
  video: { width: { ideal: 1280 }, height: { ideal: 720 } },
});

/**
 * The simulcast layers of a published camera, lowest first (the server takes the SDP order as low
 * to high). Browsers send all three from a capture of at least 960x540.
 */
export const SIMULCAST_ENCODINGS = Object.freeze([
  Object.freeze({ rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 150_000 }),
  Object.freeze({ rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 500_000 }),
  Object.freeze({ rid: 'f', maxBitrate: 1_500_000 }),
]);

/**
 * The one encoding of a shared screen. A screen is sent as a single full-resolution layer: text
 * and detail scaled down to a quarter are unreadable, so lower layers would buy little; under
 * constraint the encoder keeps the resolution and lowers the frame rate
 * (`degradationPreference: 'maintain-resolution'`), and the server serves a screen share before
 * cameras.
 */
export const SCREEN_SHARE_ENCODING = Object.freeze({ maxBitrate: 2_000_000, maxFramerate: 15 });

/** Sources of published tracks, as the server names them. */
export const TRACK_SOURCES = Object.freeze(['camera', 'microphone', 'screen', 'screen_audio']);

/**
 * The data channels opened on every session: label -> `RTCDataChannelInit`. The server relays a
 * message to the other participants' channel of the same label.
 */
export const DATA_CHANNELS = Object.freeze({
  reliable: Object.freeze({ ordered: true }),
  lossy: Object.freeze({ ordered: false, maxRetransmits: 0 }),
});

/** The largest data-channel message the server relays, in bytes (envelope included). */
export const MAX_DATA_MESSAGE_BYTES = 16 * 1024;

/** An error with a stable `code`; the `message` is for humans. */
export class SfuError extends Error {
  /**
   * @param {string} code stable machine-readable code
   * @param {string} message human-readable text
   */
  constructor(code, message) {
    super(message);
    this.name = 'SfuError';
    this.code = code;
  }
}

/** The default WebSocket URL: `/ws` on the host that served the page. */
export function defaultSignalUrl() {
  const scheme = globalThis.location?.protocol === 'https:' ? 'wss' : 'ws';
  return `${scheme}://${globalThis.location?.host}/ws`;
}

/**
 * The media sections of an SDP, in order.
 *
 * @param {string} sdp
 * @returns {{mid: string|null, kind: string, port: number, direction: string,
 *            streamId: string|null, trackId: string|null, hasMsid: boolean}[]}
 */
export function parseMediaSections(sdp) {
  const sections = [];
  let sessionDirection = 'sendrecv';
  let current = null;
  for (const line of sdp.split(/\r?\n/)) {
    if (line.startsWith('m=')) {
      const [kind, port] = line.slice(2).split(' ');
      current = {
        mid: null,
        kind,
        port: Number(port),
        direction: sessionDirection,
        streamId: null,
        trackId: null,
        hasMsid: false,
      };
      sections.push(current);
    } else if (line.startsWith('a=mid:') && current) {
      current.mid = line.slice(6).trim();
    } else if (line.startsWith('a=msid:') && current) {
      const [streamId, trackId] = line.slice(7).trim().split(/\s+/);
      current.streamId = streamId || null;
      current.trackId = trackId || null;
      current.hasMsid = true;
    } else if (/^a=ssrc:\d+ msid:/.test(line) && current && !current.hasMsid) {
      // Older SDP carries the msid only as an SSRC attribute.
      const [streamId, trackId] = line.slice(line.indexOf('msid:') + 5).trim().split(/\s+/);
      current.streamId = streamId || null;
      current.trackId = trackId || null;
    } else if (/^a=(sendrecv|sendonly|recvonly|inactive)\s*$/.test(line)) {
      const direction = line.slice(2).trim();
      if (current) current.direction = direction;
      else sessionDirection = direction;
    }
  }
  return sections;
}

/** How long `join()` waits for the server's `joined`, by default. */
const JOIN_TIMEOUT_MS = 15000;
/** How often a `ping` is sent while joined. */
const PING_INTERVAL_MS = 5000;
/** A session with no message from the server for this long is taken as disconnected. */
const SILENCE_LIMIT_MS = 12000;
/** A `ping` sent when the media connection dropped must be answered within this long. */
const PROBE_TIMEOUT_MS = 2000;
/** How often the bytes arriving on the peer connection are looked at. */
const MEDIA_WATCH_MS = 500;
/** Nothing arriving for this long (while something should) counts as the network gone. */
const MEDIA_STALL_MS = 1500;
/** How long a session the server lost (or is ending) is tried on a fresh join, by default. */
const REJOIN_WINDOW_MS = 30000;
/** Join errors that another attempt would not change. */
const FINAL_JOIN_ERRORS = new Set(['unauthorized', 'forbidden', 'invalid_name', 'bad_message', 'unsupported_version']);
/** A join follows at most this many `redirect`s between the nodes of a cluster. */
const MAX_REDIRECTS = 3;
/** A `leave` for a session whose socket dropped is given up after this long. */
const LEAVE_DETACHED_TIMEOUT_MS = 5000;
/** Resizes of an observed video are reported once they have settled for this long. */
const RESIZE_DEBOUNCE_MS = 300;
/** A size change smaller than this fraction is not worth a `track_settings`. */
const RESIZE_THRESHOLD = 0.1;
/** A `setParameters` that failed is tried again after this long, at most this many times. */
const LAYER_RETRY_MS = 1000;
const LAYER_RETRIES = 3;
/** A `bad_message` error this soon after a `track_settings` is taken as the server refusing it. */
const SETTINGS_ERROR_WINDOW_MS = 5000;
/** The first wait before a reconnect attempt; it doubles up to the next value. */
const RECONNECT_FIRST_DELAY_MS = 500;
const RECONNECT_MAX_DELAY_MS = 4000;
/** A reconnect attempt that has no answer after this long is given up for the next one. */
const RESUME_ATTEMPT_TIMEOUT_MS = 5000;
/**
 * After this many reconnect attempts in a row whose socket never opened, a session a cluster
 * redirected to another node tries the URL it joined through on every other attempt.
 */
const UNREACHABLE_BEFORE_ENTRY = 3;
/** ICE `disconnected` for this long (or `failed`) starts an ICE restart. */
const ICE_RESTART_AFTER_MS = 2000;
/** An ICE restart that has not reconnected after this long is tried again. */
const ICE_RESTART_RETRY_MS = 3000;
/** An unconfirmed `mute` is sent again after this long, at most this many times. */
const MUTE_RETRY_MS = 1000;
const MUTE_RETRIES = 10;

/**
 * A participant of the room as this client sees it.
 * @typedef {object} RemoteParticipant
 * @property {string} name display name ('' until the server has told it)
 * @property {MediaStream} stream the participant's camera and microphone; the same object for its
 * lifetime
 * @property {Map<string, string>} tracks published track ids to kind (`audio`/`video`), as announced
 * @property {Map<string, string>} sources published track ids to source (`camera`, `microphone`,
 * `screen`, `screen_audio`), as announced
 * @property {MediaStream} screenStream the participant's shared screen (and its audio); the same
 * object for its lifetime, empty while it shares nothing
 * @property {Set<string>} muted the ids of its tracks that are muted (the server does not forward them)
 * @property {boolean} reconnecting its signalling connection dropped and it may come back; its
 * media keeps flowing meanwhile
 * @property {string|null} quality its connection quality (`excellent`, `good`, `poor`, `lost`),
 * as the server last said
 */

export class SfuClient extends EventTarget {
  /** The session's peer connection; `null` outside a session. @type {RTCPeerConnection|null} */
  pc = null;
  /** The id the server gave this participant; `null` outside a session. @type {string|null} */
  participantId = null;
  /** The room joined; `null` outside a session. @type {string|null} */
  room = null;
  /**
   * This participant's connection quality as the server judges it: `excellent`, `good`, `poor`,
   * `lost`, or null before the first judgement. @type {string|null}
   */
  connectionQuality = null;
  /** The room's metadata, as the operator set it ('' when none). @type {string} */
  roomMetadata = '';
  /** Everybody else in the room, by participant id. @type {Map<string, RemoteParticipant>} */
  participants = new Map();
  /** The local camera/microphone stream; `null` outside a session. @type {MediaStream|null} */
  localStream = null;
  /**
   * The last `stream-state` per remote video track id.
   * @type {Map<string, {participantId: string, trackId: string, state: string,
   *                     reason: string|null, layer: string|null}>}
   */
  streamStates = new Map();
  /**
   * Who is speaking, loudest first, as the server last said (the own id may be among them).
   * @type {{participantId: string, level: number}[]}
   */
  speakers = [];

  /** `idle`, `joining` or `joined`. */
  #state = 'idle';
  /** The session's data channels by label. @type {Map<string, RTCDataChannel>} */
  #channels = new Map();
  /** Whether the own microphone / camera is muted; kept across sessions. */
  #localMuted = { audio: false, video: false };
  /** Own track id -> muted, as the server last confirmed (`track_muted`). @type {Map<string, boolean>} */
  #serverMuted = new Map();
  /** Own track id -> the `mute` sent and not yet confirmed. @type {Map<string, {muted: boolean, at: number}>} */
  #pendingMutes = new Map();
  #muteRetryTimer = null;
  #muteRetries = 0;
  /** Bumped on every session start and end; work of an older session checks it and stops. */
  #generation = 0;
  /** @type {WebSocket|null} */
  #ws = null;
  #chain = Promise.resolve();
  /** Whether `localStream` was captured here (and so is stopped here). */
  #ownsStream = false;
  /** Local candidates gathered before the first offer went out. */
  #localCandidates = [];
  #offerSent = false;
  /** Remote candidates that arrived before a remote description. */
  #remoteCandidates = [];
  /** The signalling URL of the session. */
  #url = null;
  /** `joined`'s resume ticket: `{ secret, graceSeconds }`, or null when the server does not resume. */
  #resumeTicket = null;
  /** `join()`'s room, name and token, for joining again. */
  #joinParams = null;
  /** `join()`'s URL: joins again go there (a cluster may send them elsewhere). */
  #joinUrl = null;
  /** Set while the socket (or the whole server session) is being replaced. */
  #reconnecting = false;
  /** A fresh join under way (see `#rejoin`), or null. */
  #rejoining = null;
  #probeTimer = null;
  #mediaWatchTimer = null;
  /** A second socket taking the session over (see `#refreshSocket`), or null. */
  #refreshing = null;
  #reconnectTimer = null;
  #iceRestartTimer = null;
  /** Participants that left; late SDP must not bring them back. */
  #departed = new Set();
  /** Server track ids announced as unpublished. */
  #unpublished = new Set();
  /** Receiver track -> server track id, as of the last sync. @type {Map<MediaStreamTrack, string>} */
  #serverTrackIds = new Map();
  /** Receiver tracks with an `ended` listener. @type {WeakSet<MediaStreamTrack>} */
  #watched = new WeakSet();
  #syncQueued = false;
  #pingTimer = null;
  #lastServerMessageAt = 0;
  /** Rejects the pending `join()` when the session is torn down before `joined`. */
  #abortJoin = null;
  /** Whether the camera goes out as simulcast layers in this session. */
  #simulcast = true;
  /** The scalability mode of the camera's one encoding (SVC, e.g. `L3T3_KEY`), or null. */
  #scalabilityMode = null;
  #redundantAudio = true;
  /** The video codec to offer first (`h264`, `vp8`), or null for the browser's own order. */
  #videoCodec = null;
  /** The session's ICE transport policy: `all`, or `relay` for TURN relays only. */
  #iceTransportPolicy = 'all';
  /** Own track id -> rids the server asked for (`publisher_layers`). @type {Map<string, Set<string>>} */
  #publisherLayers = new Map();
  /** Serializes `setParameters` calls. */
  #layerChain = Promise.resolve();
  #layerRetryTimer = null;
  #layerRetries = 0;
  /** Observed remote video elements -> whether they intersect the viewport. @type {Map<HTMLVideoElement, {intersecting: boolean}>} */
  #videoElements = new Map();
  #resizeObserver = null;
  #intersectionObserver = null;
  #resizeTimer = null;
  #visibilityListener = null;
  /** Remote track id -> the settings last sent for it. @type {Map<string, {visible: boolean, width: number, height: number}>} */
  #sentSettings = new Map();
  #lastSettingsSentAt = -Infinity;
  /** Remote track id -> its publisher, as of the last sync. @type {Map<string, string>} */
  #serverTrackOwners = new Map();
  /** Participants this client pins (kept across sessions). @type {Set<string>} */
  #pinned = new Set();
  /**
   * The own screen share: its stream, whether it was captured here, and its transceivers on the
   * current peer connection. @type {{stream: MediaStream, owns: boolean, onEnded: () => void,
   * transceivers: RTCRtpTransceiver[]}|null}
   */
  #screen = null;
  /** Own transceivers that carry something else than the camera or microphone -> their source. */
  #sources = new Map();
  /** A client offer is due once the current negotiation step is over. */
  #offerWanted = false;

  /** `idle`, `joining` or `joined`. */
  get state() {
    return this.#state;
  }

  /**
   * Joins a room. Resolves once the server has accepted the join and the client's offer is sent;
   * media flows shortly after. Rejects with an {@link SfuError} (also emitted as `error`, except
   * `aborted` when `leave()` is called meanwhile).
   *
   * @param {object} options
   * @param {string} options.room room name
   * @param {string} options.name display name
   * @param {string} [options.token] access token
   * @param {string} [options.url] WebSocket URL; default `/ws` on the page's host
   * @param {MediaStream} [options.stream] media to publish; the caller keeps ownership
   * @param {MediaStreamConstraints} [options.media] constraints for `getUserMedia` when no `stream`
   * @param {number} [options.timeoutMs] how long to wait for the server's `joined`
   * @param {boolean} [options.simulcast] publish video as three simulcast layers (default true)
   * @param {string} [options.videoCodec] the video codec to publish in, if the room allows it:
   *   `h264`, `vp8`, `vp9` or `av1`, offered first with the browser's other codecs after it (default: the
   *   browser's own order)
   * @param {string} [options.scalabilityMode] publish the camera as one encoding with these
   *   spatial and temporal layers (SVC, for example `L3T3_KEY` with `videoCodec: 'vp9'`) instead
   *   of simulcast; the server forwards each subscriber the spatial layers it needs
   * @param {boolean} [options.redundantAudio] send the microphone as Opus with redundancy (RED,
   *   where the browser has it: each packet repeats the one before, so that one lost packet costs
   *   nothing; about twice the audio bitrate upward). Default true.
   * @param {'all'|'relay'} [options.iceTransportPolicy] `relay` reaches the server only through the
   *   TURN servers it hands out (default `all`)
   * @param {string} [options.region] the region the client is in: in a cluster, a room's first
   *   join places the room on a node of that region when there is one
   * @returns {Promise<{participantId: string, participants: Map<string, RemoteParticipant>}>}
   */
  async join({
    room,
    name,
    token,
    url,
    stream,
    media = DEFAULT_MEDIA,
    timeoutMs = JOIN_TIMEOUT_MS,
    simulcast = true,
    iceTransportPolicy = 'all',
    videoCodec = null,
    scalabilityMode = null,
    redundantAudio = true,
    region,
  } = {}) {
    if (this.#state !== 'idle') {
      throw new SfuError('wrong_state', 'already in a session; call leave() first');
    }
    this.#state = 'joining';
    this.#simulcast = simulcast !== false;
    this.#videoCodec = videoCodec ? String(videoCodec).toLowerCase() : null;
    this.#scalabilityMode = scalabilityMode ? String(scalabilityMode) : null;
    this.#redundantAudio = redundantAudio !== false;
    this.#iceTransportPolicy = iceTransportPolicy === 'relay' ? 'relay' : 'all';
    const generation = ++this.#generation;
    try {
      const local = stream ?? (await captureMedia(media));
      if (generation !== this.#generation) {
        if (!stream) stopTracks(local);
        throw new SfuError('aborted', 'join aborted by leave()');
      }
      this.localStream = local;
      this.#ownsStream = !stream;
      this.#emit('local-stream', { stream: local });
      this.#url = url ?? defaultSignalUrl();
      this.#joinUrl = this.#url;
      this.#joinParams = { room, name, token, region };
      await this.#connect(this.#url, this.#joinParams, timeoutMs, generation);
      return { participantId: this.participantId, participants: this.participants };
    } catch (err) {
      const error = err instanceof SfuError ? err : new SfuError('connection_failed', String(err?.message ?? err));
      if (generation === this.#generation) {
        this.#teardown();
        this.#state = 'idle';
      }
      if (error.code !== 'aborted') this.#emit('error', { code: error.code, message: error.message });
      throw error;
    }
  }

  /**
   * Leaves the room: sends `leave`, closes the peer connection and the WebSocket, and releases the
   * camera and microphone if `join()` captured them. Emits `left` with reason `left` if a session
   * was established. Safe to call at any time.
   */
  leave() {
    if (this.#state === 'idle') return;
    const wasJoined = this.#state === 'joined';
    if (wasJoined && this.#ws?.readyState === WebSocket.OPEN) {
      this.#send({ type: 'leave' });
    } else if (wasJoined && this.#resumeTicket && this.participantId) {
      // The socket is down: without this the others would see this participant as reconnecting
      // until the server's grace period ends.
      this.#leaveDetached(this.participantId, this.#resumeTicket);
    }
    this.#end('left', wasJoined);
  }

  // ---- data --------------------------------------------------------------------------------

  /**
   * Sends a chat message: `{"kind": "chat", "text": text}` on the `reliable` channel, to the whole
   * room or only to the participants in `to`. Throws an {@link SfuError} when it cannot go out
   * (see {@link SfuClient#sendData}).
   *
   * @param {string} text
   * @param {{to?: string[]}} [options]
   */
  sendChat(text, { to } = {}) {
    if (typeof text !== 'string' || text.trim() === '') {
      throw new SfuError('bad_message', 'a chat message needs some text');
    }
    this.sendData({ kind: 'chat', text }, { to });
  }

  /**
   * Sends `payload` to the room on the `reliable` channel (`lossy: true`: the `lossy` one). A JSON
   * value goes as `{"to"?: [...], "payload": payload}`, to the participants in `to` or everybody;
   * an `ArrayBuffer` or typed array goes as a binary message to everybody (`to` is not possible).
   * Throws an {@link SfuError}: `not_connected` when the channel is not open, `message_too_large`
   * above {@link MAX_DATA_MESSAGE_BYTES}, `bad_message` for a payload that is not JSON. The
   * server's rate limit is reported later, as an `error` event with code `rate_limited`.
   *
   * @param {*} payload any JSON value, or binary data
   * @param {{to?: string[], lossy?: boolean}} [options]
   */
  sendData(payload, { to, lossy = false } = {}) {
    const label = lossy ? 'lossy' : 'reliable';
    const channel = this.#channels.get(label);
    if (this.#state !== 'joined' || !channel || channel.readyState !== 'open') {
      throw new SfuError('not_connected', `the ${label} data channel is not open`);
    }
    let data;
    let size;
    if (payload instanceof ArrayBuffer || ArrayBuffer.isView(payload)) {
      if (to != null) throw new SfuError('bad_message', 'binary messages always go to the whole room');
      data = payload;
      size = payload.byteLength;
    } else {
      let json;
      try {
        json = JSON.stringify(payload);
      } catch (err) {
        throw new SfuError('bad_message', `the payload is not JSON: ${err.message}`);
      }
      if (json === undefined) throw new SfuError('bad_message', 'the payload is not JSON');
      let text = `{"payload":${json}}`;
      if (to != null) {
        if (!Array.isArray(to) || to.length === 0 || !to.every((id) => typeof id === 'string')) {
          throw new SfuError('bad_message', '`to` must be a non-empty list of participant ids');
        }
        text = `{"to":${JSON.stringify(to)},"payload":${json}}`;
      }
      data = text;
      size = new TextEncoder().encode(text).length;
    }
    if (size > MAX_DATA_MESSAGE_BYTES) {
      throw new SfuError(
        'message_too_large',
        `data messages are limited to ${MAX_DATA_MESSAGE_BYTES} bytes (this one has ${size})`,
      );
    }
    channel.send(data);
  }

  /** The open session's data channel with this label (`reliable`, `lossy`), or null. */
  dataChannel(label) {
    return this.#channels.get(label) ?? null;
  }

  // ---- own microphone and camera -------------------------------------------------------------

  /**
   * Mutes or unmutes the own microphone (`audio`) or camera (`video`): the local track is disabled
   * (silence or black frames, the device stays open) and the server is asked to stop forwarding
   * it, which it announces to the room. The state is kept for later sessions too.
   *
   * @param {'audio'|'video'} kind
   * @param {boolean} [muted]
   * @returns {boolean} whether a track of that kind is being published
   */
  mute(kind, muted = true) {
    if (kind !== 'audio' && kind !== 'video') throw new SfuError('bad_message', "kind is 'audio' or 'video'");
    muted = !!muted;
    const changed = this.#localMuted[kind] !== muted;
    this.#localMuted[kind] = muted;
    const tracks = this.localStream?.getTracks().filter((t) => t.kind === kind) ?? [];
    for (const t of tracks) t.enabled = !muted;
    this.#muteRetries = 0;
    this.#syncMutes();
    if (changed) this.#emit('local-mute', { kind, muted });
    return tracks.length > 0;
  }

  /**
   * Tells the server the wanted mute state of every own track whose confirmed state
   * (`track_muted`) differs. The server knows the tracks only once the media connection is up,
   * and refuses a `mute` before that: unconfirmed ones are sent again a few times.
   */
  #syncMutes() {
    clearTimeout(this.#muteRetryTimer);
    this.#muteRetryTimer = null;
    if (this.#state !== 'joined') return;
    let waiting = false;
    for (const kind of ['audio', 'video']) {
      const muted = this.#localMuted[kind];
      for (const trackId of this.#ownTrackIds(kind)) {
        if ((this.#serverMuted.get(trackId) ?? false) === muted) {
          this.#pendingMutes.delete(trackId);
          continue;
        }
        const pending = this.#pendingMutes.get(trackId);
        if (!pending || pending.muted !== muted || performance.now() - pending.at >= MUTE_RETRY_MS) {
          this.#pendingMutes.set(trackId, { muted, at: performance.now() });
          this.#send({ type: 'mute', track_id: trackId, muted });
        }
        waiting = true;
      }
    }
    if (waiting && this.#muteRetries < MUTE_RETRIES) {
      this.#muteRetries++;
      this.#muteRetryTimer = setTimeout(() => this.#syncMutes(), MUTE_RETRY_MS);
    }
  }

  /** Whether the own microphone (`audio`) or camera (`video`) is muted. */
  isMuted(kind) {
    return !!this.#localMuted[kind];
  }

  /** The server's ids of the own published tracks of `kind` (known once the offer is out). */
  #ownTrackIds(kind) {
    const pc = this.pc;
    if (!pc || this.#state !== 'joined' || !this.participantId) return [];
    const ids = [];
    for (const t of pc.getTransceivers()) {
      if (t.mid == null || t.currentDirection === 'stopped' || !t.sender.track) continue;
      if (t.direction !== 'sendonly' && t.direction !== 'sendrecv') continue;
      if (t.sender.track.kind !== kind || this.#sources.has(t)) continue;
      ids.push(`${this.participantId}-${t.mid}`);
    }
    return ids;
  }

  /** The kind of an own track id, or null when it is not one of ours. */
  #ownTrackKind(trackId) {
    for (const kind of ['audio', 'video']) {
      if (this.#ownTrackIds(kind).includes(trackId)) return kind;
    }
    return null;
  }

  // ---- screen share ------------------------------------------------------------------------

  /** Whether the own screen is being shared. */
  get screenSharing() {
    return this.#screen !== null;
  }

  /** The own shared screen's stream, or null. */
  get screenStream() {
    return this.#screen?.stream ?? null;
  }

  /**
   * Shares a screen, window or tab next to the camera, on the same peer connection: its video as
   * a track of source `screen` (one full-resolution layer, see {@link SCREEN_SHARE_ENCODING}),
   * its audio, when there is some, as `screen_audio`. Captures with `getDisplayMedia` unless a
   * `stream` is given (the caller then keeps ownership). Ends by itself when the user stops
   * sharing from the browser's own controls. Emits `screen-share`.
   *
   * @param {object} [options]
   * @param {boolean} [options.audio] ask for the tab's or system's audio too (default true; the
   *   browser may give none)
   * @param {MediaStream} [options.stream] what to share instead of capturing
   * @param {'detail'|'text'|'motion'} [options.contentHint] how the encoder treats it (default
   *   `detail`; `motion` for video played on the screen)
   * @returns {Promise<MediaStream>} the shared stream
   */
  async shareScreen({ audio = true, stream, contentHint = 'detail' } = {}) {
    if (this.#state !== 'joined' || !this.pc) throw new SfuError('wrong_state', 'join a room before sharing a screen');
    if (this.#screen) throw new SfuError('wrong_state', 'already sharing a screen; call stopScreenShare() first');
    const generation = this.#generation;
    const shared = stream ?? (await captureScreen(audio));
    if (generation !== this.#generation || this.#screen || !this.pc) {
      if (!stream) stopTracks(shared);
      throw new SfuError('aborted', 'the session changed while the screen was being captured');
    }
    const video = shared.getVideoTracks()[0];
    if (!video) {
      if (!stream) stopTracks(shared);
      throw new SfuError('media_unavailable', 'the screen capture has no video track');
    }
    if ('contentHint' in video) video.contentHint = contentHint;
    const onEnded = () => {
      if (this.#screen?.stream === shared) this.stopScreenShare();
    };
    video.addEventListener('ended', onEnded);
    this.#screen = { stream: shared, owns: !stream, onEnded, transceivers: [] };
    this.#addScreen(this.pc);
    this.#renegotiate();
    this.#emit('screen-share', { active: true, stream: shared });
    return shared;
  }

  /**
   * Stops sharing the screen: the tracks are no longer sent (and stopped if `shareScreen()`
   * captured them), and the room hears they are unpublished. Returns whether a screen was shared.
   */
  stopScreenShare() {
    const s = this.#screen;
    if (!s) return false;
    this.#screen = null;
    s.stream.getVideoTracks()[0]?.removeEventListener('ended', s.onEnded);
    for (const t of s.transceivers) {
      this.#sources.delete(t);
      if (t.currentDirection === 'stopped' || this.pc === null) continue;
      t.direction = 'inactive';
      t.sender.replaceTrack(null).catch(() => {});
    }
    if (s.owns) stopTracks(s.stream);
    if (s.transceivers.length > 0 && this.pc) this.#renegotiate();
    this.#emit('screen-share', { active: false, stream: null });
    return true;
  }

  /** Adds the screen share's tracks to `pc` as new `sendonly` transceivers. */
  #addScreen(pc) {
    const s = this.#screen;
    if (!s) return;
    s.transceivers = [];
    for (const track of s.stream.getTracks()) {
      if (track.readyState === 'ended') continue;
      const init = { direction: 'sendonly', streams: [s.stream] };
      if (track.kind === 'video') init.sendEncodings = [{ ...SCREEN_SHARE_ENCODING }];
      const t = pc.addTransceiver(track, init);
      if (track.kind === 'video' && this.#videoCodec) preferVideoCodec(t, this.#videoCodec);
      if (track.kind === 'audio' && this.#redundantAudio) preferCodec(t, 'audio', 'red');
      this.#sources.set(t, track.kind === 'video' ? 'screen' : 'screen_audio');
      s.transceivers.push(t);
    }
  }

  /**
   * Keeps the screen's resolution under constraint (the frame rate gives way instead). Browsers
   * that do not take the preference keep their default, which `contentHint` already steers.
   */
  async #preferResolution() {
    for (const t of this.#screen?.transceivers ?? []) {
      if (t.sender.track?.kind !== 'video') continue;
      try {
        const params = t.sender.getParameters();
        if (params.degradationPreference === 'maintain-resolution') continue;
        params.degradationPreference = 'maintain-resolution';
        await t.sender.setParameters(params);
      } catch {
        // Not supported here.
      }
    }
  }

  // ---- pinning -----------------------------------------------------------------------------

  /** The participants this client pins. */
  get pinned() {
    return new Set(this.#pinned);
  }

  /**
   * Pins (or unpins) a participant: the server gives its videos bandwidth before the other
   * cameras this client receives (a screen share still comes first). Meant for the participant
   * shown large. Kept across sessions; returns whether anything changed.
   *
   * @param {string} participantId
   * @param {boolean} [pinned]
   * @returns {boolean}
   */
  pin(participantId, pinned = true) {
    if (typeof participantId !== 'string' || participantId === '') {
      throw new SfuError('bad_message', 'pin() takes a participant id');
    }
    const changed = pinned ? !this.#pinned.has(participantId) : this.#pinned.has(participantId);
    if (pinned) this.#pinned.add(participantId);
    else this.#pinned.delete(participantId);
    if (changed) this.#updateTrackSettings();
    return changed;
  }

  // ---- session lifecycle -------------------------------------------------------------------

  /** Opens the WebSocket and resolves once `joined` has been handled. */
  async #connect(url, params, timeoutMs, generation) {
    const attempt = this.#openJoin(url, params, timeoutMs, (ws, msg, joinedAt) => {
      if (generation !== this.#generation) {
        ws.close(1000);
        throw new SfuError('aborted', 'join aborted by leave()');
      }
      this.#url = joinedAt;
      this.#attachSocket(ws, generation);
      this.#onJoined(msg);
    });
    this.#abortJoin = attempt.abort;
    try {
      await attempt.promise;
    } finally {
      this.#abortJoin = null;
    }
  }

  /**
   * Opens a socket to `url` and sends `join`. On `joined` it calls `onJoined(ws, msg)` at once, in
   * the message handler (so that nothing sent right after `joined` is missed); `onJoined` takes
   * the socket over. The promise rejects with an {@link SfuError} when the server refuses, the
   * socket closes, nothing comes within `timeoutMs` or `abort()` is called.
   */
  #openJoin(firstUrl, { room, name, token, region }, timeoutMs, onJoined) {
    let abort = () => {};
    const promise = new Promise((resolve, reject) => {
      let hops = 0;
      const attempt = (url) => {
      let ws;
      try {
        ws = new WebSocket(url);
      } catch (err) {
        reject(new SfuError('connection_failed', `cannot open ${url}: ${err.message}`));
        return;
      }
      let settled = false;
      const release = () => {
        settled = true;
        clearTimeout(timer);
        ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      };
      const fail = (error) => {
        if (settled) return;
        release();
        if (ws.readyState === WebSocket.CONNECTING || ws.readyState === WebSocket.OPEN) ws.close(1000);
        reject(error);
      };
      const timer = setTimeout(() => {
        fail(new SfuError('timeout', `no answer from the server within ${Math.round(timeoutMs / 1000)} s`));
      }, timeoutMs);
      abort = () => fail(new SfuError('aborted', 'join aborted by leave()'));
      ws.onopen = () => {
        const join = { type: 'join', version: PROTOCOL_VERSION, room, name };
        if (token) join.token = token;
        if (region) join.region = region;
        ws.send(JSON.stringify(join));
      };
      ws.onerror = () => {
        // A `close` event always follows and carries the details.
      };
      ws.onclose = (ev) => {
        const why = ev.reason ? `: ${ev.reason}` : ` (code ${ev.code})`;
        fail(new SfuError('connection_failed', `cannot reach the server${why}`));
      };
      ws.onmessage = (ev) => {
        const msg = this.#parse(ev.data);
        if (!msg) return;
        if (msg.type === 'joined') {
          release();
          try {
            onJoined(ws, msg, url);
            resolve();
          } catch (err) {
            if (ws.readyState === WebSocket.OPEN) ws.close(1000);
            reject(err instanceof SfuError ? err : new SfuError('negotiation_failed', err.message));
          }
        } else if (msg.type === 'redirect' && typeof msg.url === 'string') {
          // Another node of the cluster serves the room: join there.
          if (hops >= MAX_REDIRECTS) {
            fail(new SfuError('connection_failed', 'too many redirects between servers'));
            return;
          }
          hops++;
          release();
          ws.close(1000);
          attempt(msg.url);
        } else if (msg.type === 'error') {
          fail(new SfuError(msg.code ?? 'internal', msg.message ?? 'join refused'));
        } else if (msg.type === 'left') {
          fail(new SfuError(msg.reason ?? 'left', `the server ended the session (${msg.reason})`));
        }
      };
      };
      attempt(firstUrl);
    });
    return { promise, abort: () => abort() };
  }

  /** `ws` carries the session of `generation` from now on. */
  #attachSocket(ws, generation) {
    this.#ws = ws;
    ws.onopen = null;
    ws.onerror = () => {};
    ws.onclose = (ev) => {
      if (generation === this.#generation) this.#socketLost(ev.code);
    };
    ws.onmessage = (ev) => {
      if (generation !== this.#generation) return;
      this.#lastServerMessageAt = Date.now();
      const msg = this.#parse(ev.data);
      if (msg) this.#onMessage(msg);
    };
  }

  /** A server message as an object, or null (an `error` event for one that is not JSON). */
  #parse(data) {
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      this.#emit('error', { code: 'bad_message', message: 'the server sent a message that is not JSON' });
      return null;
    }
    return msg && typeof msg.type === 'string' ? msg : null;
  }

  /**
   * The socket of a joined session closed or went silent: take the session up again on a new
   * socket while the server's grace period lasts. A server that does not know the session any
   * more (it restarted, or this is another one behind the same URL) is joined afresh.
   */
  #socketLost(closeCode) {
    if (this.#state !== 'joined' || this.#reconnecting) return;
    if (this.#refreshing) {
      // A second socket is already taking the session over: it decides.
      this.#dropSocket();
      return;
    }
    const ticket = this.#resumeTicket;
    if (!ticket || !this.participantId) {
      this.#dropSession();
      this.#rejoin(Date.now() + REJOIN_WINDOW_MS, 'disconnected', { closeCode });
      return;
    }
    this.#reconnecting = true;
    clearInterval(this.#pingTimer);
    this.#pingTimer = null;
    this.#dropSocket();
    const generation = this.#generation;
    const deadline = Date.now() + ticket.graceSeconds * 1000;
    let delay = RECONNECT_FIRST_DELAY_MS;
    this.#emit('reconnecting', { closeCode });
    const giveUp = () => {
      this.#reconnecting = false;
      this.#end('disconnected', true, { closeCode });
    };
    // Attempts in a row whose socket to the session's node never opened, and attempts made
    // since that reached UNREACHABLE_BEFORE_ENTRY.
    let unreachable = 0;
    let alternated = 0;
    const attempt = () => {
      if (generation !== this.#generation) return;
      if (Date.now() >= deadline) {
        giveUp();
        return;
      }
      // The node may be gone: every other attempt goes to the URL the session joined through,
      // which answers `resume_failed` when it is up (see the module's documentation).
      const toEntry =
        unreachable >= UNREACHABLE_BEFORE_ENTRY && this.#joinUrl !== this.#url && alternated++ % 2 === 0;
      let ws;
      try {
        ws = new WebSocket(toEntry ? this.#joinUrl : this.#url);
      } catch {
        ws = null;
      }
      let done = false;
      let opened = false;
      const next = () => {
        if (done || generation !== this.#generation) return;
        done = true;
        clearTimeout(attemptTimer);
        if (!toEntry) unreachable = opened ? 0 : unreachable + 1;
        if (ws) {
          ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
          if (ws.readyState === WebSocket.CONNECTING || ws.readyState === WebSocket.OPEN) ws.close(1000);
        }
        const wait = Math.min(delay, Math.max(0, deadline - Date.now()));
        delay = Math.min(delay * 2, RECONNECT_MAX_DELAY_MS);
        this.#reconnectTimer = setTimeout(attempt, wait);
      };
      const attemptTimer = setTimeout(next, RESUME_ATTEMPT_TIMEOUT_MS);
      if (!ws) {
        next();
        return;
      }
      ws.onopen = () => {
        opened = true;
        ws.send(
          JSON.stringify({
            type: 'resume',
            version: PROTOCOL_VERSION,
            participant_id: this.participantId,
            secret: ticket.secret,
          }),
        );
      };
      ws.onerror = () => {};
      ws.onclose = next;
      ws.onmessage = (ev) => {
        if (done || generation !== this.#generation) return;
        const msg = this.#parse(ev.data);
        if (msg?.type === 'resumed') {
          done = true;
          clearTimeout(attemptTimer);
          this.#resumed(ws, generation);
        } else if (msg?.type === 'error' && msg.code === 'resume_failed') {
          // The server is up but does not know this session: join it afresh.
          done = true;
          clearTimeout(attemptTimer);
          ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
          ws.close(1000);
          this.#dropSession();
          this.#rejoin(Date.now() + REJOIN_WINDOW_MS, 'disconnected', { closeCode });
        } else if (msg?.type === 'error') {
          next(); // busy or similar: try again
        }
      };
    };
    this.#reconnectTimer = setTimeout(attempt, 0);
  }

  /**
   * A new socket took the session up: it carries the session from now on. `announce`: after
   * `reconnecting` (not after a quiet socket refresh).
   */
  #resumed(ws, generation, announce = true) {
    this.#reconnecting = false;
    this.#attachSocket(ws, generation);
    this.#startPing();
    if (announce) this.#emit('reconnected', { rejoined: false });
    // What went out while no socket was there is lost: an own offer still waiting for its answer
    // goes again, and the video sizes are reported afresh.
    this.#enqueue(async (pc) => {
      if (pc.signalingState === 'have-local-offer' && pc.localDescription) {
        this.#send({ type: 'offer', sdp: pc.localDescription.sdp });
      }
    });
    this.#sentSettings.clear();
    this.#updateTrackSettings();
  }

  /**
   * Joins the room afresh on a new socket and peer connection, with the same local media, room,
   * name and token: the server is going away (`shutting_down`), or the session could not be
   * resumed. A session that still runs goes on until the new one is joined, then it is left.
   * Tries with backoff until `deadline`; if no server took the session by then, or one refused it
   * for good (a bad token, say), the session ends with `reason` once no old session is left.
   */
  #rejoin(deadline, reason, extra = {}) {
    const current = this.#rejoining;
    if (current) {
      current.deadline = Math.max(current.deadline, deadline);
      if (!this.pc) current.reason = reason;
      return;
    }
    const job = { deadline, reason, extra, delay: RECONNECT_FIRST_DELAY_MS, timer: null, abort: null };
    this.#rejoining = job;
    const stop = (why, fatal) => {
      if (this.#rejoining !== job) return;
      this.#rejoining = null;
      // Without a session left there is nothing to stay in.
      if (!this.pc) this.#end(fatal ?? job.reason, true, fatal ? { message: why } : job.extra);
    };
    const attempt = async () => {
      job.timer = null;
      if (this.#rejoining !== job) return;
      if (Date.now() >= job.deadline) {
        stop('no server took the session');
        return;
      }
      const timeout = Math.min(RESUME_ATTEMPT_TIMEOUT_MS, Math.max(1000, job.deadline - Date.now()));
      const open = this.#openJoin(this.#joinUrl, this.#joinParams, timeout, (ws, msg, joinedAt) => {
        if (this.#rejoining !== job) {
          ws.close(1000);
          throw new SfuError('aborted', 'no longer wanted');
        }
        this.#rejoining = null;
        this.#url = joinedAt;
        this.#switchSession(ws, msg);
      });
      job.abort = open.abort;
      try {
        await open.promise;
      } catch (err) {
        if (this.#rejoining !== job) return;
        job.abort = null;
        if (FINAL_JOIN_ERRORS.has(err.code)) {
          if (this.pc) this.#emit('error', { code: err.code, message: err.message });
          stop(err.message, err.code);
          return;
        }
        const wait = Math.min(job.delay, Math.max(0, job.deadline - Date.now()));
        job.delay = Math.min(job.delay * 2, RECONNECT_MAX_DELAY_MS);
        job.timer = setTimeout(attempt, wait);
      }
    };
    job.timer = setTimeout(attempt, 0);
  }

  /** Stops a rejoin under way. */
  #cancelRejoin() {
    const job = this.#rejoining;
    this.#rejoining = null;
    if (!job) return;
    clearTimeout(job.timer);
    job.abort?.();
  }

  /** A fresh join succeeded on `ws`: leave the old session (if any) and carry on in the new one. */
  #switchSession(ws, msg) {
    const old = this.#ws;
    if (old && old.readyState === WebSocket.OPEN) old.send(JSON.stringify({ type: 'leave' }));
    this.#teardownSession();
    this.#attachSocket(ws, this.#generation);
    this.#onJoined(msg);
    this.#emit('reconnected', { rejoined: true });
  }

  /**
   * The session's server side is gone (or about to be replaced): closes its socket and peer
   * connection and forgets the room as it was, keeping the local media, the join parameters and
   * the mute state. The client stays `joined` and `reconnecting` until a new session is set up.
   */
  #dropSession() {
    const hadSession = this.pc !== null || this.participants.size > 0;
    this.#teardownSession();
    if (!hadSession) return;
    this.#reconnecting = true;
    this.#emit('participants-changed', { participants: this.participants });
    this.#emit('reconnecting', { closeCode: null });
  }

  /** Best effort to end a session whose socket dropped: resume it on a new socket and leave. */
  #leaveDetached(participantId, ticket) {
    let ws;
    try {
      ws = new WebSocket(this.#url);
    } catch {
      return;
    }
    const timer = setTimeout(() => ws.close(1000), LEAVE_DETACHED_TIMEOUT_MS);
    ws.onopen = () => {
      const resume = { type: 'resume', version: PROTOCOL_VERSION, participant_id: participantId, secret: ticket.secret };
      ws.send(JSON.stringify(resume));
    };
    ws.onmessage = (ev) => {
      let msg = null;
      try {
        msg = JSON.parse(ev.data);
      } catch {
        // Not for us to report any more.
      }
      if (msg?.type === 'resumed') ws.send(JSON.stringify({ type: 'leave' }));
      if (msg?.type === 'resumed' || msg?.type === 'error') {
        clearTimeout(timer);
        ws.close(1000);
      }
    };
    ws.onclose = () => clearTimeout(timer);
  }

  /**
   * Takes the session over on a second socket while the first may still work (make before
   * break): after the media stalled, the socket has probably gone down with the network too,
   * unnoticed. If the new socket does not get through, the old one stays.
   */
  #refreshSocket() {
    const ticket = this.#resumeTicket;
    if (!ticket || !this.participantId || this.#reconnecting || this.#refreshing) return;
    const generation = this.#generation;
    let ws;
    try {
      ws = new WebSocket(this.#url);
    } catch {
      return;
    }
    this.#refreshing = ws;
    const timer = setTimeout(() => this.#cancelRefresh(true), RESUME_ATTEMPT_TIMEOUT_MS);
    ws.refreshTimer = timer;
    ws.onopen = () => {
      const resume = { type: 'resume', version: PROTOCOL_VERSION, participant_id: this.participantId, secret: ticket.secret };
      ws.send(JSON.stringify(resume));
    };
    ws.onerror = () => {};
    ws.onclose = () => this.#cancelRefresh(true);
    ws.onmessage = (ev) => {
      if (this.#refreshing !== ws || generation !== this.#generation) return;
      const msg = this.#parse(ev.data);
      if (msg?.type === 'resumed') {
        clearTimeout(timer);
        this.#refreshing = null;
        this.#dropSocket();
        this.#resumed(ws, generation, false);
      } else if (msg?.type === 'error') {
        this.#cancelRefresh(true);
      }
    };
  }

  /**
   * Gives up a socket refresh under way. `failed`: it did not get through; if the old socket is
   * gone meanwhile, the session is taken up the usual way.
   */
  #cancelRefresh(failed = false) {
    const ws = this.#refreshing;
    this.#refreshing = null;
    if (!ws) return;
    clearTimeout(ws.refreshTimer);
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    if (ws.readyState === WebSocket.CONNECTING || ws.readyState === WebSocket.OPEN) ws.close(1000);
    if (failed && !this.#ws && this.#state === 'joined') this.#socketLost(null);
  }

  /** Detaches and closes the current socket. */
  #dropSocket() {
    const ws = this.#ws;
    this.#ws = null;
    if (!ws) return;
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    if (ws.readyState === WebSocket.CONNECTING || ws.readyState === WebSocket.OPEN) ws.close(1000);
  }

  /**
   * Checks that the socket still carries messages (after the media connection dropped, the
   * socket may be dead too without having noticed): a `ping` that gets no answer in time counts
   * as a lost socket.
   */
  #probeSocket() {
    if (this.#state !== 'joined' || this.#reconnecting || !this.#ws || this.#probeTimer) return;
    const sentAt = Date.now();
    this.#send({ type: 'ping' });
    this.#probeTimer = setTimeout(() => {
      this.#probeTimer = null;
      if (this.#lastServerMessageAt < sentAt && this.#state === 'joined') this.#socketLost(null);
    }, PROBE_TIMEOUT_MS);
  }

  /** Handles `joined`: records the room, creates the peer connection and sends the first offer. */
  #onJoined(msg) {
    this.participantId = msg.participant_id;
    const ticket = msg.resume;
    this.#resumeTicket =
      ticket && typeof ticket.secret === 'string' && Number(ticket.grace_seconds) > 0
        ? { secret: ticket.secret, graceSeconds: Number(ticket.grace_seconds) }
        : null;
    this.room = msg.room ?? null;
    for (const p of msg.participants ?? []) this.#upsertParticipant(p);

    const pc = new RTCPeerConnection({
      iceServers: (msg.ice_servers ?? []).map(({ urls, username, credential }) => ({
        urls,
        ...(username != null ? { username } : {}),
        ...(credential != null ? { credential } : {}),
      })),
      bundlePolicy: 'max-bundle',
      iceTransportPolicy: this.#iceTransportPolicy,
    });
    this.pc = pc;
    pc.onicecandidate = (ev) => this.#onLocalCandidate(ev.candidate);
    pc.ontrack = (ev) => this.#onTrack(ev);
    pc.oniceconnectionstatechange = () => {
      if (this.pc !== pc) return;
      // A network change (new address, Wi-Fi to mobile) shows as `disconnected`, then `failed`:
      // restart ICE on the same connection, without renegotiating the tracks.
      clearTimeout(this.#iceRestartTimer);
      this.#iceRestartTimer = null;
      const state = pc.iceConnectionState;
      if (state === 'failed' || state === 'disconnected') {
        // Whatever cut the media may have cut the socket too, unnoticed so far.
        this.#probeSocket();
      }
      if (state === 'failed') this.#restartIce();
      else if (state === 'disconnected') {
        this.#iceRestartTimer = setTimeout(() => this.#restartIce(), ICE_RESTART_AFTER_MS);
      }
    };
    pc.onconnectionstatechange = () => {
      if (this.pc !== pc) return;
      this.#emit('connection-state', { state: pc.connectionState });
      if (pc.connectionState === 'connected' && this.#pendingMutes.size > 0) {
        // The server may know the tracks now: send the unconfirmed mutes again at once.
        for (const pending of this.#pendingMutes.values()) pending.at = -Infinity;
        this.#muteRetries = 0;
        this.#syncMutes();
      }
      if (pc.connectionState === 'failed') {
        this.#emit('error', { code: 'ice_failed', message: 'the media connection to the server failed' });
      }
    };
    for (const track of this.localStream.getTracks()) {
      if (this.#localMuted[track.kind]) track.enabled = false;
      const init = { direction: 'sendonly', streams: [this.localStream] };
      if (this.#scalabilityMode && track.kind === 'video') {
        init.sendEncodings = [{ scalabilityMode: this.#scalabilityMode }];
      } else if (this.#simulcast && track.kind === 'video') {
        // Chromium sends VP9 (and AV1) simulcast only with a scalability mode on each encoding:
        // without one it sends the first encoding alone.
        const layered = ['vp9', 'av1'].includes(this.#videoCodec) ? { scalabilityMode: 'L1T3' } : {};
        init.sendEncodings = SIMULCAST_ENCODINGS.map((e) => ({ ...e, ...layered }));
      }
      const transceiver = pc.addTransceiver(track, init);
      if (track.kind === 'video' && this.#videoCodec && !preferVideoCodec(transceiver, this.#videoCodec)) {
        console.warn(`sfu client: this browser cannot send video as ${this.#videoCodec}; using its own order`);
      }
      // Browsers send RED only when it comes before Opus in the sender's preferences.
      if (track.kind === 'audio' && this.#redundantAudio) preferCodec(transceiver, 'audio', 'red');
    }
    // A screen shared in a previous session (joined afresh) goes on in this one.
    this.#addScreen(pc);
    if (pc.getTransceivers().length === 0) {
      // Nothing to publish: the first offer still needs an m-line (and a BUNDLE group).
      pc.addTransceiver('audio', { direction: 'inactive' });
    }
    // The channels go into the first offer (one SCTP association for both).
    for (const [label, init] of Object.entries(DATA_CHANNELS)) this.#openChannel(pc, label, init);

    this.#state = 'joined';
    this.#startPing();
    this.#watchMedia(pc);
    this.#emit('participants-changed', { participants: this.participants });
    this.#enqueue(async (pc) => {
      const offer = await pc.createOffer();
      await pc.setLocalDescription(offer);
      this.#sendOffer(pc);
      this.#offerSent = true;
      for (const c of this.#localCandidates.splice(0)) this.#send(c);
    });
  }

  /**
   * Offers an ICE restart (new credentials, same tracks), unless a negotiation is under way or
   * ICE is connected; `force`: even then (the media stalled before ICE noticed).
   */
  #restartIce(force = false) {
    clearTimeout(this.#iceRestartTimer);
    this.#iceRestartTimer = null;
    this.#enqueue(async (pc) => {
      if (!this.#offerSent || pc.signalingState !== 'stable') return;
      const connected = pc.iceConnectionState === 'connected' || pc.iceConnectionState === 'completed';
      if (connected && !force) return;
      const offer = await pc.createOffer({ iceRestart: true });
      await pc.setLocalDescription(offer);
      this.#sendOffer(pc);
      // If this restart does not take either, try again.
      this.#iceRestartTimer = setTimeout(() => this.#restartIce(), ICE_RESTART_RETRY_MS);
    });
  }

  /**
   * Offers what the client publishes now (after a screen share started or stopped), once the
   * negotiation under way is over.
   */
  #renegotiate() {
    this.#enqueue(async (pc) => {
      if (!this.#offerSent || pc.signalingState !== 'stable') {
        this.#offerWanted = true;
        return;
      }
      this.#offerWanted = false;
      await pc.setLocalDescription(await pc.createOffer());
      this.#sendOffer(pc);
    });
  }

  /**
   * Sends the local offer, naming the source of each sending m-line when one is not a camera or
   * microphone (the server takes those as the default).
   */
  #sendOffer(pc) {
    const msg = { type: 'offer', sdp: pc.localDescription.sdp };
    const sources = {};
    let named = false;
    for (const t of pc.getTransceivers()) {
      if (t.mid == null || !t.sender.track || (t.direction !== 'sendonly' && t.direction !== 'sendrecv')) continue;
      const source = this.#sources.get(t);
      sources[t.mid] = source ?? (t.sender.track.kind === 'audio' ? 'microphone' : 'camera');
      named ||= source !== undefined;
    }
    if (named) msg.sources = sources;
    this.#send(msg);
  }

  /**
   * Watches the bytes arriving on `pc`: when nothing has come for a while although something
   * should (the server sends transport feedback for own media, and the others' media), the
   * network probably changed under the connection. Browsers take several seconds more to call
   * that `disconnected`; the client checks the socket and restarts ICE at once.
   */
  #watchMedia(pc) {
    clearInterval(this.#mediaWatchTimer);
    let lastBytes = -1;
    let lastMoveAt = Date.now();
    let handled = false;
    let busy = false;
    this.#mediaWatchTimer = setInterval(async () => {
      if (busy || this.pc !== pc || this.#state !== 'joined' || this.#reconnecting) return;
      busy = true;
      try {
        const stats = await pc.getStats();
        let transport = null;
        let pairs = 0;
        stats.forEach((s) => {
          if (s.type === 'transport') transport = (transport ?? 0) + (s.bytesReceived ?? 0);
          else if (s.type === 'candidate-pair') pairs += s.bytesReceived ?? 0;
        });
        const bytes = transport ?? pairs;
        const now = Date.now();
        if (bytes !== lastBytes) {
          lastBytes = bytes;
          lastMoveAt = now;
          handled = false;
          return;
        }
        const expecting = this.participants.size > 0 || pc.getSenders().some((s) => s.track);
        if (!handled && expecting && bytes > 0 && now - lastMoveAt >= MEDIA_STALL_MS) {
          handled = true;
          this.#refreshSocket();
          this.#restartIce(true);
        }
      } catch {
        // The connection closed meanwhile.
      } finally {
        busy = false;
      }
    }, MEDIA_WATCH_MS);
  }

  #openChannel(pc, label, init) {
    const channel = pc.createDataChannel(label, { ...init });
    channel.binaryType = 'arraybuffer';
    this.#channels.set(label, channel);
    channel.onopen = () => {
      if (this.pc === pc) this.#emit('data-state', { channel: label, state: 'open' });
    };
    channel.onclose = () => {
      if (this.pc === pc) this.#emit('data-state', { channel: label, state: 'closed' });
    };
    channel.onmessage = (ev) => {
      if (this.pc === pc) this.#onChannelMessage(label, ev.data);
    };
  }

  /** A relayed message: a JSON envelope stamped by the server, or id-prefixed binary data. */
  #onChannelMessage(channel, data) {
    let from;
    let payload;
    let direct = false;
    let binary = false;
    if (typeof data === 'string') {
      let msg;
      try {
        msg = JSON.parse(data);
      } catch {
        return;
      }
      if (!msg || typeof msg !== 'object' || typeof msg.from !== 'string' || !('payload' in msg)) return;
      from = msg.from;
      payload = msg.payload;
      direct = msg.direct === true;
    } else if (data instanceof ArrayBuffer && data.byteLength > 0) {
      const bytes = new Uint8Array(data);
      const idLength = bytes[0];
      if (data.byteLength < 1 + idLength) return;
      from = new TextDecoder().decode(bytes.subarray(1, 1 + idLength));
      payload = data.slice(1 + idLength);
      binary = true;
    } else {
      return;
    }
    const name = this.participants.get(from)?.name ?? '';
    this.#emit('data', { from, name, payload, direct, channel, binary });
  }

  /** Ends the session and, if it was established, emits `left`. */
  #end(reason, announce, extra = {}) {
    this.#teardown();
    this.#state = 'idle';
    if (announce) {
      this.#emit('participants-changed', { participants: this.participants });
      this.#emit('left', { reason, ...extra });
    }
  }

  /** Releases everything the session holds, the local media included. Idempotent. */
  #teardown() {
    this.#cancelRejoin();
    this.#abortJoin?.();
    this.#abortJoin = null;
    this.#teardownSession();
    this.stopScreenShare();
    if (this.localStream && this.#ownsStream) stopTracks(this.localStream);
    this.localStream = null;
    this.#ownsStream = false;
    this.#joinParams = null;
  }

  /**
   * Releases what one server session holds: its socket, peer connection, channels and the room as
   * it was seen. The local media, the join parameters and a rejoin under way stay.
   */
  #teardownSession() {
    this.#generation++;
    clearInterval(this.#pingTimer);
    this.#pingTimer = null;
    clearTimeout(this.#probeTimer);
    this.#probeTimer = null;
    clearInterval(this.#mediaWatchTimer);
    this.#mediaWatchTimer = null;
    this.#cancelRefresh();
    this.#dropSocket();
    clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = null;
    clearTimeout(this.#iceRestartTimer);
    this.#iceRestartTimer = null;
    this.#reconnecting = false;
    this.#resumeTicket = null;
    for (const channel of this.#channels.values()) {
      channel.onopen = channel.onclose = channel.onmessage = null;
      try {
        channel.close();
      } catch {
        // Already closed.
      }
    }
    this.#channels.clear();
    if (this.pc) {
      const pc = this.pc;
      this.pc = null;
      pc.onicecandidate = pc.ontrack = pc.onconnectionstatechange = pc.oniceconnectionstatechange = null;
      pc.close();
    }
    for (const p of this.participants.values()) {
      for (const t of p.stream.getTracks()) p.stream.removeTrack(t);
      for (const t of p.screenStream.getTracks()) p.screenStream.removeTrack(t);
    }
    // The screen share (if any) goes on in the next session, on new transceivers.
    if (this.#screen) this.#screen.transceivers = [];
    this.#sources.clear();
    this.#offerWanted = false;
    this.#serverTrackOwners.clear();
    this.participants.clear();
    this.participantId = null;
    this.room = null;
    this.roomMetadata = '';
    this.#chain = Promise.resolve();
    this.#localCandidates = [];
    this.#remoteCandidates = [];
    this.#offerSent = false;
    this.#departed.clear();
    this.#unpublished.clear();
    this.#serverTrackIds.clear();
    this.streamStates.clear();
    this.speakers = [];
    this.#serverMuted.clear();
    this.#pendingMutes.clear();
    clearTimeout(this.#muteRetryTimer);
    this.#muteRetryTimer = null;
    this.#muteRetries = 0;
    this.#publisherLayers.clear();
    this.#layerChain = Promise.resolve();
    clearTimeout(this.#layerRetryTimer);
    this.#layerRetryTimer = null;
    this.#layerRetries = 0;
    clearTimeout(this.#resizeTimer);
    this.#resizeTimer = null;
    this.#sentSettings.clear();
    this.#lastSettingsSentAt = -Infinity;
  }

  // ---- server messages ---------------------------------------------------------------------

  #onMessage(msg) {
    switch (msg.type) {
      case 'offer':
        this.#enqueue(async (pc) => {
          // The client is the impolite side: while its own offer is out, the server's is dropped.
          if (pc.signalingState !== 'stable') return;
          await pc.setRemoteDescription({ type: 'offer', sdp: msg.sdp });
          await this.#flushRemoteCandidates(pc);
          await pc.setLocalDescription(await pc.createAnswer());
          this.#send({ type: 'answer', sdp: pc.localDescription.sdp });
          this.#syncRemoteTracks();
          if (this.#offerWanted) this.#renegotiate();
        });
        break;
      case 'answer':
        this.#enqueue(async (pc) => {
          if (pc.signalingState !== 'have-local-offer') return;
          await pc.setRemoteDescription({ type: 'answer', sdp: msg.sdp });
          await this.#flushRemoteCandidates(pc);
          this.#syncRemoteTracks();
          if (this.#publisherLayers.size > 0) this.#applyPublisherLayers();
          // Muted before the tracks had ids: tell the server now (and again once connected).
          this.#syncMutes();
          if (this.#screen) await this.#preferResolution();
          if (this.#offerWanted) this.#renegotiate();
        });
        break;
      case 'candidate':
        this.#enqueue(async (pc) => {
          const init = {
            candidate: msg.candidate ?? '',
            sdpMid: msg.sdpMid ?? null,
            sdpMLineIndex: msg.sdpMLineIndex ?? (msg.sdpMid == null ? 0 : null),
          };
          if (!pc.remoteDescription) this.#remoteCandidates.push(init);
          else await addCandidate(pc, init);
        });
        break;
      case 'participant_joined':
        this.#departed.delete(msg.participant?.id);
        this.#upsertParticipant(msg.participant);
        this.#emit('participants-changed', { participants: this.participants });
        break;
      case 'participant_left':
        for (const [trackId, s] of this.streamStates) {
          if (s.participantId === msg.participant_id) this.streamStates.delete(trackId);
        }
        this.#removeParticipant(msg.participant_id);
        if (this.speakers.some((s) => s.participantId === msg.participant_id)) {
          this.speakers = this.speakers.filter((s) => s.participantId !== msg.participant_id);
          this.#emit('speakers', { speakers: this.speakers });
        }
        break;
      case 'participant_reconnecting':
      case 'participant_resumed': {
        const p = this.participants.get(msg.participant_id);
        if (p) {
          p.reconnecting = msg.type === 'participant_reconnecting';
          this.#emit('participants-changed', { participants: this.participants });
        }
        break;
      }
      case 'connection_quality': {
        if (typeof msg.participant_id !== 'string' || typeof msg.quality !== 'string') break;
        const local = msg.participant_id === this.participantId;
        if (local) this.connectionQuality = msg.quality;
        else {
          const p = this.participants.get(msg.participant_id);
          if (!p) break;
          p.quality = msg.quality;
        }
        this.#emit('connection-quality', { participantId: msg.participant_id, quality: msg.quality, local });
        break;
      }
      case 'shutting_down': {
        // Move to a server that takes joins (behind the same URL) before this one ends the call.
        const drainSeconds = Number(msg.drain_seconds) || 0;
        this.#emit('shutting-down', { drainSeconds });
        this.#rejoin(Date.now() + drainSeconds * 1000 + REJOIN_WINDOW_MS, 'server_shutdown');
        break;
      }
      case 'participant_updated':
        if (msg.participant?.id && this.participants.has(msg.participant.id)) {
          this.#upsertParticipant(msg.participant);
          this.#emit('participants-changed', { participants: this.participants });
        }
        break;
      case 'stream_state': {
        if (typeof msg.track_id !== 'string') break;
        const state = {
          participantId: msg.participant_id ?? null,
          trackId: msg.track_id,
          state: msg.state === 'paused' ? 'paused' : 'active',
          reason: msg.reason ?? null,
          layer: msg.layer ?? null,
        };
        this.streamStates.set(state.trackId, state);
        this.#emit('stream-state', state);
        break;
      }
      case 'publisher_layers':
        if (typeof msg.track_id !== 'string' || !Array.isArray(msg.active)) break;
        this.#publisherLayers.set(msg.track_id, new Set(msg.active));
        this.#layerRetries = 0;
        this.#applyPublisherLayers();
        break;
      case 'track_published': {
        const p = this.#ensureParticipant(msg.participant_id);
        if (p && msg.track?.id) {
          p.tracks.set(msg.track.id, msg.track.kind);
          p.sources.set(msg.track.id, trackSource(msg.track));
          if (msg.track.muted === true) p.muted.add(msg.track.id);
          else p.muted.delete(msg.track.id);
          // A track that arrived before its announcement moves to the stream its source says.
          this.#syncRemoteTracks();
        }
        this.#emit('participants-changed', { participants: this.participants });
        break;
      }
      case 'track_unpublished':
        this.#unpublished.add(msg.track_id);
        this.streamStates.delete(msg.track_id);
        this.participants.get(msg.participant_id)?.tracks.delete(msg.track_id);
        this.participants.get(msg.participant_id)?.muted.delete(msg.track_id);
        this.participants.get(msg.participant_id)?.sources.delete(msg.track_id);
        this.#syncRemoteTracks();
        this.#emit('participants-changed', { participants: this.participants });
        break;
      case 'track_muted':
        this.#onTrackMuted(msg);
        break;
      case 'speakers': {
        const speakers = (Array.isArray(msg.speakers) ? msg.speakers : [])
          .filter((s) => s && typeof s.participant_id === 'string')
          .map((s) => ({ participantId: s.participant_id, level: Number(s.level) || 0 }));
        this.speakers = speakers;
        this.#emit('speakers', { speakers });
        break;
      }
      case 'left':
        if (msg.reason === 'server_shutdown') {
          // The drain is over and no other server has taken the session yet: keep trying.
          this.#dropSession();
          this.#rejoin(Date.now() + REJOIN_WINDOW_MS, 'server_shutdown');
          break;
        }
        this.#end(msg.reason ?? 'left', true);
        break;
      case 'error':
        // A `track_settings` for a track that has just gone away is refused; that is harmless.
        if (
          msg.code === 'bad_message' &&
          /track/i.test(msg.message ?? '') &&
          performance.now() - this.#lastSettingsSentAt < SETTINGS_ERROR_WINDOW_MS
        ) {
          break;
        }
        // A `mute` that reached the server before the media connection is tried again.
        if (msg.code === 'forbidden' && /mute/i.test(msg.message ?? '') && this.#muteRetryTimer !== null) break;
        this.#emit('error', { code: msg.code ?? 'internal', message: msg.message ?? '' });
        break;
      case 'room_updated':
        this.roomMetadata = typeof msg.metadata === 'string' ? msg.metadata : '';
        this.#emit('room-updated', { room: msg.room, metadata: this.roomMetadata });
        break;
      case 'pong':
        break;
      default:
        // Unknown types are skipped so that a newer server can add messages.
        break;
    }
  }

  /** `track_muted`: record it per participant; for an own track, follow it locally too. */
  #onTrackMuted(msg) {
    if (typeof msg.track_id !== 'string' || typeof msg.participant_id !== 'string') return;
    const muted = msg.muted === true;
    const trackId = msg.track_id;
    if (msg.participant_id === this.participantId) {
      const kind = this.#ownTrackKind(trackId);
      this.#serverMuted.set(trackId, muted);
      const pending = this.#pendingMutes.get(trackId);
      if (pending) {
        // The answer to our own `mute` (or to an earlier one, when toggled quickly).
        if (pending.muted === muted) this.#pendingMutes.delete(trackId);
      } else if (kind && this.#localMuted[kind] !== muted) {
        // Muted or unmuted by somebody else (an operator): follow it.
        this.#localMuted[kind] = muted;
        for (const t of this.localStream?.getTracks() ?? []) if (t.kind === kind) t.enabled = !muted;
        this.#emit('local-mute', { kind, muted });
      }
      this.#emit('track-muted', { participantId: msg.participant_id, trackId, kind, muted, local: true });
      return;
    }
    const p = this.#ensureParticipant(msg.participant_id);
    if (!p) return;
    if (muted) p.muted.add(trackId);
    else p.muted.delete(trackId);
    const kind = p.tracks.get(trackId) ?? null;
    this.#emit('track-muted', { participantId: msg.participant_id, trackId, kind, muted, local: false });
  }

  // ---- negotiation -------------------------------------------------------------------------

  /** Runs `step(pc)` after every step queued before it, unless the session ended meanwhile. */
  #enqueue(step) {
    const generation = this.#generation;
    this.#chain = this.#chain
      .then(() => (generation === this.#generation && this.pc ? step(this.pc) : undefined))
      .catch((err) => {
        if (generation !== this.#generation) return;
        this.#emit('error', { code: 'negotiation_failed', message: String(err?.message ?? err) });
      });
  }

  async #flushRemoteCandidates(pc) {
    for (const init of this.#remoteCandidates.splice(0)) await addCandidate(pc, init);
  }

  #onLocalCandidate(candidate) {
    let msg;
    if (!candidate) {
      msg = { type: 'candidate', candidate: '' };
    } else if (!candidate.candidate) {
      return;
    } else {
      msg = { type: 'candidate', candidate: candidate.candidate };
      if (candidate.sdpMid != null) msg.sdpMid = candidate.sdpMid;
      if (candidate.sdpMLineIndex != null) msg.sdpMLineIndex = candidate.sdpMLineIndex;
    }
    if (this.#offerSent) this.#send(msg);
    else this.#localCandidates.push(msg);
  }

  // ---- remote media ------------------------------------------------------------------------

  #onTrack(ev) {
    const track = ev.track;
    if (!this.#watched.has(track)) {
      this.#watched.add(track);
      track.addEventListener('ended', () => this.#queueSync());
    }
    this.#queueSync();
  }

  #queueSync() {
    if (this.#syncQueued) return;
    this.#syncQueued = true;
    queueMicrotask(() => {
      this.#syncQueued = false;
      this.#syncRemoteTracks();
    });
  }

  /**
   * Makes every participant's stream hold exactly the receiver tracks the server currently sends
   * for that participant, as the remote SDP's directions and msids say.
   */
  #syncRemoteTracks() {
    const pc = this.pc;
    if (!pc || !pc.remoteDescription) return;
    const sections = new Map();
    for (const s of parseMediaSections(pc.remoteDescription.sdp)) {
      if (s.mid != null) sections.set(s.mid, s);
    }

    /** @type {Map<string, Set<MediaStreamTrack>>} */
    const wanted = new Map();
    this.#serverTrackIds.clear();
    this.#serverTrackOwners.clear();
    for (const t of pc.getTransceivers()) {
      const s = t.mid == null ? undefined : sections.get(t.mid);
      const track = t.receiver.track;
      const sending = s && s.port !== 0 && (s.direction === 'sendonly' || s.direction === 'sendrecv');
      if (!sending || t.currentDirection === 'stopped' || track.readyState === 'ended') continue;
      if (!s.streamId || s.streamId === '-' || s.streamId === this.participantId) continue;
      if (this.#departed.has(s.streamId) || (s.trackId && this.#unpublished.has(s.trackId))) continue;
      if (!wanted.has(s.streamId)) wanted.set(s.streamId, new Set());
      wanted.get(s.streamId).add(track);
      if (s.trackId) {
        this.#serverTrackIds.set(track, s.trackId);
        this.#serverTrackOwners.set(s.trackId, s.streamId);
      }
    }

    let membershipChanged = false;
    for (const id of wanted.keys()) {
      if (!this.participants.has(id)) {
        this.#ensureParticipant(id);
        membershipChanged = true;
      }
    }
    const changed = [];
    for (const [id, p] of this.participants) {
      const want = wanted.get(id) ?? new Set();
      // Screen tracks go to the participant's screen stream, the rest to its main stream.
      const isScreen = (t) => isScreenSource(p.sources.get(this.#serverTrackIds.get(t)));
      let dirty = false;
      for (const [stream, screen] of [
        [p.stream, false],
        [p.screenStream, true],
      ]) {
        for (const t of stream.getTracks()) {
          if (!want.has(t) || isScreen(t) !== screen) {
            stream.removeTrack(t);
            dirty = true;
          }
        }
        for (const t of want) {
          if (isScreen(t) === screen && !stream.getTrackById(t.id)) {
            stream.addTrack(t);
            dirty = true;
          }
        }
      }
      if (dirty) changed.push([id, p]);
    }
    if (membershipChanged) this.#emit('participants-changed', { participants: this.participants });
    for (const [participantId, p] of changed) {
      this.#emit('remote-stream', { participantId, stream: p.stream, screenStream: p.screenStream });
    }
    if (this.#videoElements.size > 0 || this.#pinned.size > 0 || this.#sentSettings.size > 0) {
      this.#updateTrackSettings();
    }
  }

  /** The server's track id of a remote track, if the server's SDP named one. */
  serverTrackId(track) {
    return this.#serverTrackIds.get(track) ?? null;
  }

  // ---- remote video size and visibility ------------------------------------------------------

  /**
   * Reports how `element` shows remote video from now on: its size in device pixels and whether
   * it is on screen, for every remote video track in its `srcObject` (which may change at any
   * time). Observing an element twice is harmless. Returns a function that stops observing.
   *
   * @param {HTMLVideoElement} element
   * @returns {() => void}
   */
  observeVideo(element) {
    if (!this.#videoElements.has(element)) {
      this.#videoElements.set(element, { intersecting: true });
      this.#startObservers();
      this.#resizeObserver?.observe(element);
      this.#intersectionObserver?.observe(element);
    }
    this.#updateTrackSettings();
    return () => this.unobserveVideo(element);
  }

  /** Stops observing `element` (see {@link SfuClient#observeVideo}). */
  unobserveVideo(element) {
    if (!this.#videoElements.delete(element)) return;
    this.#resizeObserver?.unobserve(element);
    this.#intersectionObserver?.unobserve(element);
    if (this.#videoElements.size === 0) this.#stopObservers();
  }

  /** Sends the settings of observed tracks again if they changed (for an app that moved video). */
  refreshVideoSettings() {
    this.#updateTrackSettings();
  }

  #startObservers() {
    if (this.#resizeObserver || this.#intersectionObserver || this.#visibilityListener) return;
    if (typeof ResizeObserver === 'function') {
      this.#resizeObserver = new ResizeObserver(() => {
        clearTimeout(this.#resizeTimer);
        this.#resizeTimer = setTimeout(() => {
          this.#resizeTimer = null;
          this.#updateTrackSettings();
        }, RESIZE_DEBOUNCE_MS);
      });
    }
    if (typeof IntersectionObserver === 'function') {
      this.#intersectionObserver = new IntersectionObserver((entries) => {
        let flipped = false;
        for (const e of entries) {
          const state = this.#videoElements.get(e.target);
          if (state && state.intersecting !== e.isIntersecting) {
            state.intersecting = e.isIntersecting;
            flipped = true;
          }
        }
        if (flipped) this.#updateTrackSettings();
      });
    }
    if (globalThis.document) {
      this.#visibilityListener = () => this.#updateTrackSettings();
      document.addEventListener('visibilitychange', this.#visibilityListener);
    }
  }

  #stopObservers() {
    this.#resizeObserver?.disconnect();
    this.#intersectionObserver?.disconnect();
    this.#resizeObserver = this.#intersectionObserver = null;
    if (this.#visibilityListener) document.removeEventListener('visibilitychange', this.#visibilityListener);
    this.#visibilityListener = null;
    clearTimeout(this.#resizeTimer);
    this.#resizeTimer = null;
  }

  /**
   * Works out, per remote video track in an observed element, whether it is visible and its
   * largest visible size, and sends `track_settings` where that changed: always when visibility
   * flips or for a track not reported yet, otherwise when width or height moved by more than
   * {@link RESIZE_THRESHOLD}.
   */
  #updateTrackSettings() {
    if (this.#state !== 'joined' || !this.pc) return;
    // The server knows a subscription once it has the answer to the offer that brought it; in the
    // middle of a negotiation wait (its end syncs the tracks, which comes back here).
    if (this.pc.signalingState !== 'stable') return;
    const pageVisible = globalThis.document?.visibilityState !== 'hidden';
    const ratio = globalThis.devicePixelRatio || 1;
    /** @type {Map<string, {visible: boolean, width: number, height: number, pinned: boolean}>} */
    const wanted = new Map();
    for (const [element, { intersecting }] of this.#videoElements) {
      const stream = element.srcObject;
      if (!stream || typeof stream.getVideoTracks !== 'function') continue;
      const width = Math.round(element.clientWidth * ratio);
      const height = Math.round(element.clientHeight * ratio);
      const visible = pageVisible && intersecting && element.isConnected && width > 0 && height > 0;
      for (const track of stream.getVideoTracks()) {
        const trackId = this.#serverTrackIds.get(track);
        if (!trackId) continue;
        const pinned = this.#pinned.has(this.#serverTrackOwners.get(trackId));
        const s = wanted.get(trackId) ?? { visible: false, width: 0, height: 0, pinned };
        if (visible) {
          s.visible = true;
          s.width = Math.max(s.width, width);
          s.height = Math.max(s.height, height);
        }
        wanted.set(trackId, s);
      }
    }
    // Pinned videos the app does not hand to observeVideo(): the pin alone is news.
    for (const [track, trackId] of this.#serverTrackIds) {
      if (track.kind !== 'video' || wanted.has(trackId)) continue;
      const owner = this.#serverTrackOwners.get(trackId);
      if (this.#pinned.has(owner)) wanted.set(trackId, { visible: true, width: 0, height: 0, pinned: true });
    }
    for (const [trackId, last] of [...this.#sentSettings]) {
      if (wanted.has(trackId)) continue;
      this.#sentSettings.delete(trackId);
      // Unpinned and no longer observed: take the pin back, keep the rest as last said.
      const known = [...this.#serverTrackIds.values()].includes(trackId);
      if (last.pinned && known) {
        this.#send({ type: 'track_settings', track_id: trackId, visible: last.visible, width: last.width, height: last.height });
      }
    }
    const moved = (now, before) => Math.abs(now - before) > RESIZE_THRESHOLD * Math.max(before, 1);
    for (const [trackId, s] of wanted) {
      const last = this.#sentSettings.get(trackId);
      const due =
        !last ||
        last.visible !== s.visible ||
        last.pinned !== s.pinned ||
        (s.visible && (moved(s.width, last.width) || moved(s.height, last.height)));
      if (!due) continue;
      this.#sentSettings.set(trackId, s);
      this.#lastSettingsSentAt = performance.now();
      const msg = { type: 'track_settings', track_id: trackId, visible: s.visible, width: s.width, height: s.height };
      // Absent means not pinned (and keeps the message what older servers take).
      if (s.pinned) msg.pinned = true;
      this.#send(msg);
    }
  }

  // ---- simulcast layers of the own camera ----------------------------------------------------

  /**
   * Switches the own simulcast encodings on and off as the last `publisher_layers` per track says.
   * Runs on its own chain so that no two `setParameters` overlap; a failure is retried a few times.
   */
  #applyPublisherLayers() {
    const generation = this.#generation;
    clearTimeout(this.#layerRetryTimer);
    this.#layerRetryTimer = null;
    this.#layerChain = this.#layerChain.then(async () => {
      const pc = this.pc;
      if (generation !== this.#generation || !pc) return;
      let failed = null;
      for (const t of pc.getTransceivers()) {
        const sender = t.sender;
        if (t.mid == null || !sender.track || t.currentDirection === 'stopped') continue;
        const active = this.#publisherLayers.get(`${this.participantId}-${t.mid}`);
        if (!active) continue;
        try {
          const params = sender.getParameters();
          const encodings = params.encodings ?? [];
          let changed = false;
          for (const e of encodings) {
            if (!e.rid) continue;
            const on = active.has(e.rid);
            if (e.active !== on) {
              e.active = on;
              changed = true;
            }
          }
          if (changed) await sender.setParameters(params);
        } catch (err) {
          failed = err;
        }
      }
      if (generation !== this.#generation) return;
      if (!failed) {
        this.#layerRetries = 0;
      } else if (this.#layerRetries < LAYER_RETRIES) {
        this.#layerRetries++;
        this.#layerRetryTimer = setTimeout(() => this.#applyPublisherLayers(), LAYER_RETRY_MS);
      } else {
        console.warn('sfu client: cannot switch simulcast layers:', failed);
      }
    }).catch(() => {});
  }

  // ---- participants ------------------------------------------------------------------------

  #ensureParticipant(id) {
    if (!id || id === this.participantId || this.#departed.has(id)) return null;
    let p = this.participants.get(id);
    if (!p) {
      p = {
        name: '',
        stream: new MediaStream(),
        tracks: new Map(),
        sources: new Map(),
        screenStream: new MediaStream(),
        muted: new Set(),
        reconnecting: false,
        quality: null,
      };
      this.participants.set(id, p);
    }
    return p;
  }

  #upsertParticipant(info) {
    const p = this.#ensureParticipant(info?.id);
    if (!p) return;
    if (typeof info.name === 'string') p.name = info.name;
    for (const t of info.tracks ?? []) {
      p.tracks.set(t.id, t.kind);
      p.sources.set(t.id, trackSource(t));
      if (t.muted === true) p.muted.add(t.id);
      else p.muted.delete(t.id);
    }
  }

  #removeParticipant(id) {
    const p = this.participants.get(id);
    this.#departed.add(id);
    if (!p) return;
    this.participants.delete(id);
    const hadTracks = p.stream.getTracks().length + p.screenStream.getTracks().length > 0;
    for (const stream of [p.stream, p.screenStream]) {
      for (const t of stream.getTracks()) stream.removeTrack(t);
    }
    this.#emit('participants-changed', { participants: this.participants });
    if (hadTracks) this.#emit('remote-stream', { participantId: id, stream: p.stream, screenStream: p.screenStream });
  }

  // ---- plumbing ----------------------------------------------------------------------------

  #send(msg) {
    const ws = this.#ws;
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(msg));
  }

  #startPing() {
    clearInterval(this.#pingTimer);
    this.#lastServerMessageAt = Date.now();
    this.#pingTimer = setInterval(() => {
      if (Date.now() - this.#lastServerMessageAt > SILENCE_LIMIT_MS) {
        this.#socketLost(null);
        return;
      }
      this.#send({ type: 'ping' });
    }, PING_INTERVAL_MS);
  }

  #emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}

/** Captures camera and microphone, turning browser errors into {@link SfuError}s. */
async function captureMedia(constraints) {
  if (!globalThis.navigator?.mediaDevices?.getUserMedia) {
    throw new SfuError(
      'media_unavailable',
      'this page cannot use the camera: it needs a secure context (https or localhost)',
    );
  }
  try {
    return await navigator.mediaDevices.getUserMedia(constraints);
  } catch (err) {
    const denied = err?.name === 'NotAllowedError' || err?.name === 'SecurityError';
    const what = denied ? 'access to the camera or microphone was denied' : 'no usable camera or microphone';
    throw new SfuError(denied ? 'media_denied' : 'media_unavailable', `${what} (${err?.name ?? 'Error'}: ${err?.message ?? err})`);
  }
}

/** Captures a screen, window or tab, turning browser errors into {@link SfuError}s. */
async function captureScreen(audio) {
  if (!globalThis.navigator?.mediaDevices?.getDisplayMedia) {
    throw new SfuError('media_unavailable', 'this browser cannot share a screen (getDisplayMedia is missing)');
  }
  try {
    return await navigator.mediaDevices.getDisplayMedia({
      video: { frameRate: { ideal: SCREEN_SHARE_ENCODING.maxFramerate, max: 30 } },
      audio: !!audio,
    });
  } catch (err) {
    const denied = err?.name === 'NotAllowedError' || err?.name === 'SecurityError';
    const what = denied ? 'screen sharing was cancelled or denied' : 'no screen could be captured';
    throw new SfuError(denied ? 'media_denied' : 'media_unavailable', `${what} (${err?.name ?? 'Error'}: ${err?.message ?? err})`);
  }
}

/** The source of an announced track; servers that name none send cameras and microphones. */
function trackSource(info) {
  if (TRACK_SOURCES.includes(info?.source)) return info.source;
  return info?.kind === 'audio' ? 'microphone' : 'camera';
}

function isScreenSource(source) {
  return source === 'screen' || source === 'screen_audio';
}

/**
 * Puts the video codec `name` (`h264`, `vp8`, `vp9`, `av1`) first in the transceiver's codec preferences, every
 * other codec the browser sends after it in its own order. Returns whether it could.
 */
function preferVideoCodec(transceiver, name) {
  return preferCodec(transceiver, 'video', name);
}

/**
 * Puts the codec `kind/name` first in the transceiver's codec preferences, every other codec of
 * that kind after it in the browser's own order. Returns whether it could.
 */
function preferCodec(transceiver, kind, name) {
  const mime = `${kind}/${name}`.toLowerCase();
  const first = (codecs) => [
    ...codecs.filter((c) => c.mimeType.toLowerCase() === mime),
    ...codecs.filter((c) => c.mimeType.toLowerCase() !== mime),
  ];
  if (typeof transceiver.setCodecPreferences !== 'function') return false;
  // Browsers check sending transceivers against what they send, older ones against what they
  // receive: try both.
  for (const source of [globalThis.RTCRtpSender, globalThis.RTCRtpReceiver]) {
    const codecs = source?.getCapabilities?.(kind)?.codecs ?? [];
    if (!codecs.some((c) => c.mimeType.toLowerCase() === mime)) continue;
    try {
      transceiver.setCodecPreferences(first(codecs));
      return true;
    } catch {
      // Refused by this browser: try the other list.
    }
  }
  return false;
}

/** Adds a remote candidate; a candidate the browser cannot use is not worth ending the session. */
async function addCandidate(pc, init) {
  try {
    await pc.addIceCandidate(init);
  } catch {
    // The server's candidates are in its SDP too; a bad trickled one is dropped.
  }
}

function stopTracks(stream) {
  for (const t of stream.getTracks()) t.stop();
}
