// Typed use of the whole public API, checked by `npm run build` (tsc, strict). Lines marked
// `@ts-expect-error` must stay errors: they prove the declarations are precise, not `any`.

import {
  DATA_CHANNELS,
  DEFAULT_MEDIA,
  MAX_DATA_MESSAGE_BYTES,
  PROTOCOL_VERSION,
  SIMULCAST_ENCODINGS,
  SfuClient,
  SfuError,
  VERSION,
  defaultSignalUrl,
  parseMediaSections,
  SCREEN_SHARE_ENCODING,
  TRACK_SOURCES,
  type TrackSource,
  type ConnectionQuality,
  type JoinResult,
  type RemoteParticipant,
  type StreamState,
} from '../src/sfu-client.js';

// The README's example, line for line (test/module.test.js checks that).
export async function readmeExample(videoFor: (id: string) => HTMLVideoElement, token: string): Promise<void> {
  const client = new SfuClient();
  client.addEventListener('remote-stream', (e) => {
    const video = videoFor(e.detail.participantId); // your own <video> per participant
    video.srcObject = e.detail.stream;
    client.observeVideo(video); // the server then sends no more than the element shows
  });
  client.addEventListener('left', (e) => console.info('call over:', e.detail.reason));
  await client.join({ room: 'team', name: 'Ann', token });
}

export async function everything(video: HTMLVideoElement, stream: MediaStream): Promise<void> {
  const version: 1 = PROTOCOL_VERSION;
  const release: string = VERSION;
  const url: string = defaultSignalUrl();
  const media: MediaStreamConstraints = DEFAULT_MEDIA;
  const rids: string[] = SIMULCAST_ENCODINGS.map((e) => e.rid);
  const ordered: boolean | undefined = DATA_CHANNELS.reliable.ordered;
  const limit: number = MAX_DATA_MESSAGE_BYTES;
  const mids = parseMediaSections('v=0\r\n').map((s) => s.mid);
  console.log(version, release, url, media, rids, ordered, limit, mids);

  const client = new SfuClient();
  const result: JoinResult = await client.join({
    room: 'r',
    name: 'n',
    url: 'ws://127.0.0.1:8080/ws',
    stream,
    timeoutMs: 10_000,
    simulcast: false,
    videoCodec: 'h264',
    scalabilityMode: null,
    redundantAudio: true,
    iceTransportPolicy: 'relay',
    region: 'eu-west',
  });
  const me: string = result.participantId;
  const others: Map<string, RemoteParticipant> = client.participants;
  for (const [id, p] of others) {
    const q: ConnectionQuality | null = p.quality;
    const kinds: ('audio' | 'video')[] = [...p.tracks.values()];
    console.log(id, p.name, p.stream.id, p.muted.size, p.reconnecting, q, kinds);
  }
  const state: 'idle' | 'joining' | 'joined' = client.state;
  const pc: RTCPeerConnection | null = client.pc;
  const states: Map<string, StreamState> = client.streamStates;
  console.log(me, state, pc, states, client.room, client.roomMetadata, client.speakers, client.localStream);

  client.sendChat('hello');
  client.sendChat('psst', { to: ['p1'] });
  client.sendData({ any: ['json'] }, { lossy: true });
  client.sendData(new Uint8Array([1, 2, 3]));
  const channel: RTCDataChannel | null = client.dataChannel('reliable');
  const published: boolean = client.mute('video');
  const muted: boolean = client.isMuted('audio');
  const stop: () => void = client.observeVideo(video);
  client.unobserveVideo(video);
  client.refreshVideoSettings();
  const track = stream.getVideoTracks()[0];
  const serverId: string | null = track ? client.serverTrackId(track) : null;
  const screen: MediaStream = await client.shareScreen({ audio: false, stream, contentHint: 'text' });
  const sharing: boolean = client.screenSharing;
  const shared: MediaStream | null = client.screenStream;
  const stopped: boolean = client.stopScreenShare();
  const pinChanged: boolean = client.pin('p1');
  client.pin('p1', false);
  const pins: Set<string> = client.pinned;
  const sources: readonly TrackSource[] = TRACK_SOURCES;
  const screenRate: number = SCREEN_SHARE_ENCODING.maxBitrate;
  client.addEventListener('screen-share', (e) => {
    const active: boolean = e.detail.active;
    const s: MediaStream | null = e.detail.stream;
    console.log(active, s);
  });
  client.addEventListener('remote-stream', (e) => {
    const s: MediaStream = e.detail.screenStream;
    console.log(s);
  });
  for (const p of client.participants.values()) {
    const source: TrackSource | undefined = p.sources.get('x');
    console.log(p.screenStream.id, source);
  }
  // @ts-expect-error: not a source
  const badSource: TrackSource = 'webcam';
  console.log(screen, sharing, shared, stopped, pinChanged, pins, sources, screenRate, badSource);
  console.log(channel, published, muted, serverId);
  stop();

  client.addEventListener('data', (e) => console.log(e.detail.from, e.detail.name, e.detail.payload, e.detail.direct, e.detail.channel, e.detail.binary));
  client.addEventListener('data-state', (e) => console.log(e.detail.channel, e.detail.state));
  client.addEventListener('speakers', (e) => console.log(e.detail.speakers.map((s) => s.level)));
  client.addEventListener('track-muted', (e) => console.log(e.detail.participantId, e.detail.trackId, e.detail.kind, e.detail.muted, e.detail.local));
  client.addEventListener('local-mute', (e) => console.log(e.detail.kind, e.detail.muted));
  client.addEventListener('stream-state', (e) => console.log(e.detail.state, e.detail.reason, e.detail.layer));
  client.addEventListener('participants-changed', (e) => console.log(e.detail.participants.size));
  client.addEventListener('remote-stream', (e) => console.log(e.detail.participantId, e.detail.stream));
  client.addEventListener('local-stream', (e) => console.log(e.detail.stream));
  client.addEventListener('room-updated', (e) => console.log(e.detail.room, e.detail.metadata));
  client.addEventListener('connection-state', (e) => console.log(e.detail.state));
  client.addEventListener('error', (e) => console.log(e.detail.code, e.detail.message));
  client.addEventListener('reconnecting', (e) => console.log(e.detail.closeCode));
  client.addEventListener('reconnected', (e) => console.log(e.detail.rejoined));
  client.addEventListener('connection-quality', (e) => console.log(e.detail.participantId, e.detail.quality, e.detail.local));
  client.addEventListener('shutting-down', (e) => console.log(e.detail.drainSeconds));
  client.addEventListener('left', (e) => console.log(e.detail.reason, e.detail.closeCode, e.detail.message));
  // Events of other names still type-check as plain events.
  client.addEventListener('something-else', (e: Event) => console.log(e.type));

  try {
    client.leave();
  } catch (err) {
    if (err instanceof SfuError) console.log(err.code, err.message);
  }
}

export function mistakes(client: SfuClient): void {
  // @ts-expect-error a room and a name are required
  void client.join({ room: 'r' });
  // @ts-expect-error only h264, vp8 and vp9 can be asked for
  void client.join({ room: 'r', name: 'n', videoCodec: 'av2' });
  // @ts-expect-error mute takes a media kind
  client.mute('screen');
  // @ts-expect-error the data channels are `reliable` and `lossy`
  client.dataChannel('video');
  client.addEventListener('reconnected', (e) => {
    // @ts-expect-error `reconnected` carries `rejoined`, not a participant
    console.log(e.detail.participantId);
  });
  client.addEventListener('stream-state', (e) => {
    // @ts-expect-error a stream state is `active` or `paused`
    if (e.detail.state === 'stopped') console.log(e);
  });
  // @ts-expect-error the participants map is not optional
  client.participants = undefined;
}
