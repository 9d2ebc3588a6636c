// Type declarations of `sfu-client.js`, the SFU's browser client. Every exported value, every
// public member of `SfuClient` and every event it emits is declared here; `npm test` checks that
// this file and the module agree.

/** The protocol version this client speaks (the `version` of `join` and `resume`). */
export declare const PROTOCOL_VERSION: 1;

/** The version of this client: the package's, the same as the server's release. */
export declare const VERSION: string;

/** Media asked for when `join()` is given neither `stream` nor `media`. */
export declare const DEFAULT_MEDIA: Readonly<MediaStreamConstraints>;

/** One simulcast layer of a published camera. */
export interface SimulcastEncoding {
  readonly rid: 'q' | 'h' | 'f';
  readonly scaleResolutionDownBy?: number;
  readonly maxBitrate: number;
}

/** The simulcast layers of a published camera, lowest first. */
export declare const SIMULCAST_ENCODINGS: readonly SimulcastEncoding[];

/** The one encoding of a shared screen: a single full-resolution layer. */
export declare const SCREEN_SHARE_ENCODING: Readonly<{ maxBitrate: number; maxFramerate: number }>;

/** What a published track carries. */
export type TrackSource = 'camera' | 'microphone' | 'screen' | 'screen_audio';

/** Every {@link TrackSource}. */
export declare const TRACK_SOURCES: readonly TrackSource[];

/** The label of a data channel every session opens. */
export type DataChannelLabel = 'reliable' | 'lossy';

/** The data channels opened on every session: label -> `RTCDataChannelInit`. */
export declare const DATA_CHANNELS: Readonly<Record<DataChannelLabel, Readonly<RTCDataChannelInit>>>;

/** The largest data-channel message the server relays, in bytes (envelope included). */
export declare const MAX_DATA_MESSAGE_BYTES: number;

/**
 * Codes of the errors the client reports: the server's (see the protocol's `error` message) and
 * the client's own. Other strings may appear from newer servers.
 */
export type ErrorCode =
  // the server's
  | 'bad_message'
  | 'message_too_large'
  | 'unsupported_version'
  | 'not_joined'
  | 'already_joined'
  | 'invalid_name'
  | 'invalid_sdp'
  | 'wrong_state'
  | 'unauthorized'
  | 'forbidden'
  | 'room_full'
  | 'server_busy'
  | 'invalid_request'
  | 'not_found'
  | 'conflict'
  | 'rate_limited'
  | 'limit_exceeded'
  | 'resume_failed'
  | 'redirected'
  | 'unsupported_codec'
  | 'internal'
  // the client's own
  | 'media_denied'
  | 'media_unavailable'
  | 'connection_failed'
  | 'timeout'
  | 'negotiation_failed'
  | 'ice_failed'
  | 'not_connected'
  | 'aborted'
  | (string & {});

/** An error with a stable `code`; the `message` is for humans. */
export declare class SfuError extends Error {
  constructor(code: ErrorCode, message: string);
  readonly name: 'SfuError';
  /** Stable, machine-readable. */
  code: ErrorCode;
}

/** The default WebSocket URL: `/ws` on the host that served the page. */
export declare function defaultSignalUrl(): string;

/** One media section of an SDP, as {@link parseMediaSections} reads it. */
export interface MediaSection {
  mid: string | null;
  kind: string;
  port: number;
  direction: RTCRtpTransceiverDirection | string;
  streamId: string | null;
  trackId: string | null;
  hasMsid: boolean;
}

/** The media sections of an SDP, in order. */
export declare function parseMediaSections(sdp: string): MediaSection[];

/** A connection quality as the server judges it. */
export type ConnectionQuality = 'excellent' | 'good' | 'poor' | 'lost';

/** A participant of the room as this client sees it. */
export interface RemoteParticipant {
  /** Display name ('' until the server has told it). */
  name: string;
  /** The participant's camera and microphone; the same object for its lifetime. */
  stream: MediaStream;
  /** The participant's shared screen and its audio; the same object, empty while it shares none. */
  screenStream: MediaStream;
  /** Published track ids to kind, as announced. */
  tracks: Map<string, 'audio' | 'video'>;
  /** Published track ids to source, as announced. */
  sources: Map<string, TrackSource>;
  /** The ids of its tracks that are muted (the server does not forward them). */
  muted: Set<string>;
  /** Its signalling connection dropped and it may come back; its media keeps flowing meanwhile. */
  reconnecting: boolean;
  /** Its connection quality as the server last said, or null before the first judgement. */
  quality: ConnectionQuality | null;
}

/** Why the server paused a remote video. */
export type PauseReason = 'bandwidth' | 'hidden' | 'muted' | 'publisher' | 'codec' | (string & {});

/** The server started, paused or switched a remote video. */
export interface StreamState {
  participantId: string;
  trackId: string;
  state: 'active' | 'paused';
  /** Why it is paused; null when active. */
  reason: PauseReason | null;
  /** The simulcast rid received (`q`, `h`, `f`) when active; null for a single-layer track. */
  layer: string | null;
}

/** Somebody speaking, with a level from 0 to 100. */
export interface Speaker {
  participantId: string;
  level: number;
}

/** Options of {@link SfuClient.join}. */
export interface JoinOptions {
  /** Room name. */
  room: string;
  /** Display name. */
  name: string;
  /** Access token (required by servers with API keys). */
  token?: string;
  /** WebSocket URL; default `/ws` on the page's host. */
  url?: string;
  /** Media to publish; the caller keeps ownership (it is not stopped on leave). */
  stream?: MediaStream;
  /** Constraints for `getUserMedia` when no `stream` is given (default {@link DEFAULT_MEDIA}). */
  media?: MediaStreamConstraints;
  /** How long to wait for the server's `joined`, in milliseconds (default 15000). */
  timeoutMs?: number;
  /** Publish video as three simulcast layers (default true). */
  simulcast?: boolean;
  /**
   * The video codec to publish in, if the room allows it (default: the browser's own order).
   * With `vp9` or `av1` and simulcast each encoding gets `scalabilityMode: 'L1T3'`.
   */
  videoCodec?: 'h264' | 'vp8' | 'vp9' | 'av1' | null;
  /**
   * Publish the camera as one encoding with these spatial and temporal layers (SVC), instead of
   * simulcast: `L3T3_KEY` with `videoCodec: 'vp9'` or `'av1'` (default null: simulcast or one layer).
   */
  scalabilityMode?: string | null;
  /**
   * Send the microphone as Opus with redundancy (RED) where the browser has it: each packet
   * repeats the one before, so that one lost packet costs nothing (about twice the audio bitrate
   * upward). Default true.
   */
  redundantAudio?: boolean;
  /** `relay` reaches the server only through the TURN servers it hands out (default `all`). */
  iceTransportPolicy?: 'all' | 'relay';
  /**
   * The region the client is in (letters, digits, `-`, `_`, `.`): in a cluster, a room's first
   * join places the room on a node of that region when there is one.
   */
  region?: string;
}

/** Options of {@link SfuClient.shareScreen}. */
export interface ShareScreenOptions {
  /** Ask for the tab's or system's audio too (default true; the browser may give none). */
  audio?: boolean;
  /** What to share instead of capturing with `getDisplayMedia`; the caller keeps ownership. */
  stream?: MediaStream;
  /** How the encoder treats the video (default `detail`). */
  contentHint?: 'detail' | 'text' | 'motion';
}

/** What {@link SfuClient.join} resolves to. */
export interface JoinResult {
  participantId: string;
  participants: Map<string, RemoteParticipant>;
}

/** Options of {@link SfuClient.sendData}. */
export interface SendDataOptions {
  /** Participant ids to send to; everybody when absent. Not possible for binary payloads. */
  to?: string[];
  /** Send on the `lossy` channel (unordered, no retransmissions). */
  lossy?: boolean;
}

/** The session ended. */
export interface LeftDetail {
  /**
   * `left` after `leave()`, `disconnected` when the WebSocket could not be taken up again, or the
   * server's reason (`server_shutdown`, `removed`, `room_deleted`, `timeout`, ...).
   */
  reason: string;
  /** With `disconnected`: the last WebSocket close code. */
  closeCode?: number | null;
  /** With a server's reason: its words, when it gave some. */
  message?: string;
}

/** The `detail` of each event {@link SfuClient} emits, by event name. */
export interface SfuClientEventDetails {
  /** A data-channel message from another participant. */
  data: {
    /** The sender's id, as the server stamped it. */
    from: string;
    /** The sender's display name as known here. */
    name: string;
    /** The sender's JSON payload; an `ArrayBuffer` for binary messages. */
    payload: unknown;
    /** True when the sender addressed this participant by id. */
    direct: boolean;
    channel: DataChannelLabel;
    binary: boolean;
  };
  /** A data channel opened or closed. */
  'data-state': { channel: DataChannelLabel; state: 'open' | 'closed' };
  /** Who is speaking now, loudest first (empty: nobody); the own id may be among them. */
  speakers: { speakers: Speaker[] };
  /** A track was muted or unmuted (the own ones included: `local`). */
  'track-muted': { participantId: string; trackId: string; kind: 'audio' | 'video'; muted: boolean; local: boolean };
  /** The own microphone or camera was muted or unmuted, by `mute()` or by the server. */
  'local-mute': { kind: 'audio' | 'video'; muted: boolean };
  /** The server started, paused or switched a remote video. */
  'stream-state': StreamState;
  /** Someone joined or left, or the local session started or ended. */
  'participants-changed': { participants: Map<string, RemoteParticipant> };
  /** The tracks of a participant's streams changed: camera and microphone, or shared screen. */
  'remote-stream': { participantId: string; stream: MediaStream; screenStream: MediaStream };
  /** The own screen share started or ended; `stream` is null when it ended. */
  'screen-share': { active: boolean; stream: MediaStream | null };
  /** The local camera/microphone stream is ready. */
  'local-stream': { stream: MediaStream };
  /** The room's metadata, after joining when it has some and whenever the operator changes it. */
  'room-updated': { room: string; metadata: string };
  /** The peer connection's `connectionState` changed. */
  'connection-state': { state: RTCPeerConnectionState };
  /** Something failed. */
  error: { code: ErrorCode; message: string };
  /** The WebSocket dropped; the client is taking the session up on a new one. Media keeps flowing. */
  reconnecting: { closeCode: number | null };
  /** The session goes on: resumed (`rejoined` false) or joined afresh with a new participant id. */
  reconnected: { rejoined: boolean };
  /** The server's judgement of a connection changed; `local` for this participant's own. */
  'connection-quality': { participantId: string; quality: ConnectionQuality; local: boolean };
  /** The server is shutting down; the client is moving the session meanwhile. */
  'shutting-down': { drainSeconds: number };
  /** The session ended (emitted once per session). */
  left: LeftDetail;
}

/** Every event {@link SfuClient} emits, as the `CustomEvent` a listener receives. */
export type SfuClientEventMap = {
  [K in keyof SfuClientEventDetails]: CustomEvent<SfuClientEventDetails[K]>;
};

/** The client's session state. */
export type ClientState = 'idle' | 'joining' | 'joined';

/**
 * One participant's session with the SFU: one WebSocket for signalling, one `RTCPeerConnection`
 * for all media. See the module's documentation for the call order, reconnects and events.
 */
export declare class SfuClient extends EventTarget {
  constructor();

  /** The session's peer connection; null outside a session. */
  pc: RTCPeerConnection | null;
  /** The id the server gave this participant; null outside a session. */
  participantId: string | null;
  /** The room joined; null outside a session. */
  room: string | null;
  /** This participant's connection quality as the server judges it; null before the first. */
  connectionQuality: ConnectionQuality | null;
  /** The room's metadata, as the operator set it ('' when none). */
  roomMetadata: string;
  /** Everybody else in the room, by participant id. */
  participants: Map<string, RemoteParticipant>;
  /** The local camera/microphone stream; null outside a session. */
  localStream: MediaStream | null;
  /** The last `stream-state` per remote video track id. */
  streamStates: Map<string, StreamState>;
  /** Who is speaking, loudest first, as the server last said. */
  speakers: Speaker[];

  /** `idle`, `joining` or `joined`. */
  get state(): ClientState;

  /**
   * Joins a room. Resolves once the server has accepted the join and the client's offer is sent.
   * Rejects with an {@link SfuError} (also emitted as `error`, except `aborted` when `leave()` is
   * called meanwhile).
   */
  join(options: JoinOptions): Promise<JoinResult>;

  /** Leaves the room and releases what `join()` captured. Safe to call at any time. */
  leave(): void;

  /** Sends a chat message (`{"kind": "chat", "text": text}`) on the `reliable` channel. */
  sendChat(text: string, options?: { to?: string[] }): void;

  /**
   * Sends a JSON value (to `to` or everybody) or binary data (to everybody). Throws an
   * {@link SfuError}: `not_connected`, `message_too_large`, `bad_message`.
   */
  sendData(payload: unknown, options?: SendDataOptions): void;

  /** The open session's data channel with this label, or null. */
  dataChannel(label: DataChannelLabel): RTCDataChannel | null;

  /**
   * Mutes or unmutes the own microphone or camera (kept for later sessions too). Returns whether a
   * track of that kind is being published.
   */
  mute(kind: 'audio' | 'video', muted?: boolean): boolean;

  /** Whether the own microphone (`audio`) or camera (`video`) is muted. */
  isMuted(kind: 'audio' | 'video'): boolean;

  /** Whether the own screen is being shared. */
  get screenSharing(): boolean;

  /** The own shared screen's stream, or null. */
  get screenStream(): MediaStream | null;

  /**
   * Shares a screen, window or tab (captured with `getDisplayMedia` unless a stream is given) as a
   * track of source `screen`, and its audio as `screen_audio`. Resolves to the shared stream.
   * Rejects with an {@link SfuError}: `wrong_state` (not joined, or already sharing),
   * `media_denied`, `media_unavailable`, `aborted`.
   */
  shareScreen(options?: ShareScreenOptions): Promise<MediaStream>;

  /** Stops sharing the screen. Returns whether a screen was shared. */
  stopScreenShare(): boolean;

  /** The participants this client pins. */
  get pinned(): Set<string>;

  /**
   * Pins (or unpins) a participant: its videos get bandwidth before the other cameras (screen
   * shares first). Kept across sessions. Returns whether anything changed.
   */
  pin(participantId: string, pinned?: boolean): boolean;

  /** The server's track id of a remote track, if the server's SDP named one. */
  serverTrackId(track: MediaStreamTrack): string | null;

  /**
   * Reports how `element` shows remote video from now on (size and visibility), so that the
   * server sends no larger layer than needed. Returns a function that stops observing.
   */
  observeVideo(element: HTMLVideoElement): () => void;

  /** Stops observing `element`. */
  unobserveVideo(element: HTMLVideoElement): void;

  /** Sends the settings of observed tracks again if they changed. */
  refreshVideoSettings(): void;

  addEventListener<K extends keyof SfuClientEventMap>(
    type: K,
    listener: (this: SfuClient, event: SfuClientEventMap[K]) => void,
    options?: boolean | AddEventListenerOptions,
  ): void;
  addEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | AddEventListenerOptions,
  ): void;
  removeEventListener<K extends keyof SfuClientEventMap>(
    type: K,
    listener: (this: SfuClient, event: SfuClientEventMap[K]) => void,
    options?: boolean | EventListenerOptions,
  ): void;
  removeEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | EventListenerOptions,
  ): void;
}
