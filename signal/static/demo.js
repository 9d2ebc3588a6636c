// The demo page: a lobby (a preview of the camera, a choice of camera and microphone, the join
// form), then a grid of tiles, the own one (mirrored, labelled "You") among the others (highlighted
// while their owner speaks, a crossed microphone next to the name while muted), mute buttons for the
// own microphone and camera, a "Stats" switch that shows the simulcast layer and resolution received
// on each video, and a chat panel (messages to everyone or to one participant, over the data
// channel). The lobby's camera and microphone are the ones the call publishes; the choices of
// devices and of the stats switch are remembered in localStorage.
//
// Query parameters: `room`, `name` prefill the form, `token` is the access token to join with
// (an invitation link: the form shows its room, which cannot be changed, and its name; without
// one the page asks the development-only endpoint `/api/dev/token`, which exists while the server
// runs without configured keys, and otherwise says to ask for an invitation), `autojoin=1`
// joins at once (with the devices chosen last time, without waiting for a click), `simulcast=0`
// publishes the camera as a single layer, `media=audio|video|none` publishes only the
// microphone, only the camera, or nothing (watch only), `codec=h264|vp8|vp9|av1` offers that video codec
// first (the room may still decide), `scalability=L3T3_KEY` publishes the camera as one SVC
// encoding (with `codec=vp9` or `codec=av1`). `window.sfuDemo`
// exposes the client and a few timings for tests.

import { DEFAULT_MEDIA, SfuClient } from './client.js';

const $ = (selector) => document.querySelector(selector);

const client = new SfuClient();
const metrics = {
  /** `performance.now()` when join was asked for. */
  joinClickedAt: null,
  /** `performance.now()` when the server accepted the join. */
  joinedAt: null,
  /** `performance.now()` when the first remote video frame was shown. */
  firstRemoteFrameAt: null,
};
window.sfuDemo = { client, metrics };

const params = new URLSearchParams(location.search);
const NAME_KEY = 'sfu-demo-name';
const CAMERA_KEY = 'sfu-demo-camera';
const MICROPHONE_KEY = 'sfu-demo-microphone';
const STATS_KEY = 'sfu-demo-stats';

const ERROR_TEXT = {
  media_denied: 'Camera or microphone access was denied. Allow it in the browser and try again.',
  media_unavailable: 'No usable camera or microphone was found.',
  connection_failed: 'Cannot reach the server.',
  timeout: 'The server did not answer in time.',
  ice_failed: 'The media connection failed. Check your network and try again.',
  negotiation_failed: 'Setting up the media connection failed.',
  unauthorized: 'Access denied: the invitation is missing, expired or invalid.',
  forbidden: 'You are not allowed to join this room.',
  room_full: 'The room is full.',
  server_busy: 'The server is busy. Try again in a moment.',
  invalid_name: 'Room or name not accepted',
  unsupported_version: 'This page is out of date. Reload it.',
  not_found: 'This room does not exist.',
};

/** Shown when the server has API keys and the page was opened without `?token=`. */
const NEEDS_INVITATION =
  'This meeting is by invitation only. Ask the meeting\u2019s organiser for your invitation ' +
  'link, then open that link to join.';

const LEFT_TEXT = {
  disconnected: 'The connection to the server was lost and could not be restored.',
  timeout: 'The media connection timed out.',
  removed: 'You were removed from the room.',
  room_deleted: 'The room was closed.',
  duplicate_identity: 'You joined this room again from somewhere else; this page has left.',
  server_shutdown: 'The server was restarted and no other server took the call. Join again to continue.',
  slow_consumer: 'The connection to the server was too slow to keep up.',
  ended: 'The server ended the session.',
};

// ---- form -----------------------------------------------------------------------------------

const roomInput = $('#room');
const nameInput = $('#name');
const givenClaims = tokenClaims(params.get('token'));
roomInput.value = givenClaims.room || params.get('room') || roomInput.value || 'demo';
nameInput.value = params.get('name') || givenClaims.name || readStoredName();
// An invitation opens one room only: show it, and do not offer to change it.
if (typeof givenClaims.room === 'string') {
  roomInput.readOnly = true;
  roomInput.title = 'The room of your invitation';
}
/** The server needs an invitation and the page has none: joining cannot work. */
let needsInvitation = false;

$('#join-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  join();
});
$('#leave').addEventListener('click', () => {
  // Before the client has started (the token or the devices are on their way) there is nothing
  // to leave but the page state.
  if (client.state === 'idle') setState('idle');
  else client.leave();
});
$('#error .dismiss').addEventListener('click', hideError);

async function join() {
  if (client.state !== 'idle') return;
  hideError();
  const room = roomInput.value.trim() || 'demo';
  const name = nameInput.value.trim();
  if (!name) {
    showError('Please enter your name.');
    nameInput.focus();
    return;
  }
  metrics.joinClickedAt = performance.now();
  metrics.joinedAt = null;
  metrics.firstRemoteFrameAt = null;
  storeName(name);
  rememberInUrl(room);
  setState('joining');
  $('#room-label').textContent = room;
  let token;
  try {
    token = await accessToken(room, name);
  } catch (err) {
    setState('idle');
    showError(err.message);
    return;
  }
  // The lobby's camera and microphone; without them (access refused, no device) the client
  // asks the browser itself and reports why it failed.
  const stream = await lobbyMedia();
  if (client.state !== 'idle' || document.body.dataset.state !== 'joining') return;
  try {
    await client.join({
      room,
      name,
      token,
      simulcast: params.get('simulcast') !== '0',
      iceTransportPolicy: params.get('relay') === '1' ? 'relay' : 'all',
      videoCodec: params.get('codec') || null,
      scalabilityMode: params.get('scalability') || null,
      ...(stream ? { stream } : publishOptions(params.get('media'))),
    });
    metrics.joinedAt = performance.now();
    setState('joined');
  } catch {
    // The `error` event has already put the reason on the banner.
    if (client.state === 'idle') setState('idle');
  }
}

/**
 * The access token to join with: `?token=` when the page has one, otherwise a development token
 * from `/api/dev/token`. That endpoint answers 404 once the server has configured keys.
 */
async function accessToken(room, name) {
  const given = params.get('token');
  if (given) return given;
  let res;
  try {
    const query = new URLSearchParams({ room, name });
    res = await fetch(`/api/dev/token?${query}`, { cache: 'no-store' });
  } catch {
    throw new Error(ERROR_TEXT.connection_failed);
  }
  if (res.status === 404) throw new Error(NEEDS_INVITATION);
  const body = await res.json().catch(() => ({}));
  if (!res.ok || typeof body.token !== 'string') {
    const text = ERROR_TEXT[body.code];
    throw new Error(text ? `${text}: ${body.message ?? ''}` : `No token (HTTP ${res.status}).`);
  }
  return body.token;
}

/**
 * Without an invitation link, finds out at once whether the server hands out development tokens:
 * its endpoint answers a request without a room 400 when it does, 404 when the server has keys
 * (nothing is minted either way). In the second case the page says to ask for an invitation.
 */
async function checkInvitationNeeded() {
  if (params.get('token')) return;
  let res;
  try {
    res = await fetch('/api/dev/token', { cache: 'no-store' });
  } catch {
    return; // Joining will tell.
  }
  if (res.status !== 404 || client.state !== 'idle') return;
  needsInvitation = true;
  showError(NEEDS_INVITATION);
  setState('idle');
}

/** The claims of a token, unverified (only to prefill the form); `{}` when there is none. */
function tokenClaims(token) {
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const bytes = Uint8Array.from(atob(part), (c) => c.charCodeAt(0));
    const claims = JSON.parse(new TextDecoder().decode(bytes));
    return claims && typeof claims === 'object' ? claims : {};
  } catch {
    return {};
  }
}

/** What `join()` publishes for the `media` query parameter (default: camera and microphone). */
function publishOptions(media) {
  const camera = DEFAULT_MEDIA.video;
  switch (media) {
    case 'audio':
      return { media: { audio: true, video: false } };
    case 'video':
      return { media: { audio: false, video: camera } };
    case 'none':
      return { stream: new MediaStream() };
    default:
      return {};
  }
}

// ---- lobby: camera and microphone ----------------------------------------------------------

/** What the page publishes, from the `media` query parameter (default: camera and microphone). */
const WANTS = {
  audio: !['video', 'none'].includes(params.get('media')),
  video: !['audio', 'none'].includes(params.get('media')),
};

/**
 * The lobby's media: one stream that the preview shows and the call publishes. The page owns it
 * (the client is handed it and leaves it running): it is stopped after a call and opened again for
 * the lobby. Device changes run one after the other on `chain`.
 */
const lobby = {
  /** @type {MediaStream|null} */
  stream: null,
  /** The last failure to open a device, shown under the preview; null when all went well. */
  error: null,
  chain: Promise.resolve(),
};

$('#camera-select').addEventListener('change', (ev) => {
  storeSetting(CAMERA_KEY, ev.target.value);
  openDevices({ video: true });
});
$('#microphone-select').addEventListener('change', (ev) => {
  storeSetting(MICROPHONE_KEY, ev.target.value);
  openDevices({ audio: true });
});
navigator.mediaDevices?.addEventListener?.('devicechange', () => renderDevices());
$('#camera-field').hidden = !WANTS.video;
$('#microphone-field').hidden = !WANTS.audio;
$('#preview-frame').hidden = !WANTS.video && !WANTS.audio;

/**
 * (Re)opens the devices of the kinds asked for (default: all the page publishes) with the choices
 * of the selects, replacing their tracks in the lobby stream. Resolves when done; never rejects.
 */
function openDevices(kinds = WANTS) {
  lobby.chain = lobby.chain.then(() => replaceTracks(kinds));
  return lobby.chain;
}

async function replaceTracks(kinds) {
  const audio = WANTS.audio && kinds.audio === true;
  const video = WANTS.video && kinds.video === true;
  lobby.stream ??= new MediaStream();
  if (!audio && !video) return;
  if (!navigator.mediaDevices?.getUserMedia) {
    lobby.error = 'This page cannot use the camera or microphone: it needs https or localhost.';
    renderPreview();
    return;
  }
  // Release the old device first: some cameras cannot be opened twice.
  for (const t of lobby.stream.getTracks()) {
    if ((t.kind === 'audio' && audio) || (t.kind === 'video' && video)) {
      t.stop();
      lobby.stream.removeTrack(t);
    }
  }
  const chosen = (select, key) => select.value || readSetting(key);
  const constraints = (exact) => ({
    audio: audio && deviceConstraint(true, exact ? chosen($('#microphone-select'), MICROPHONE_KEY) : ''),
    video: video && deviceConstraint(DEFAULT_MEDIA.video, exact ? chosen($('#camera-select'), CAMERA_KEY) : ''),
  });
  let fresh;
  try {
    try {
      fresh = await navigator.mediaDevices.getUserMedia(constraints(true));
    } catch (err) {
      // The device chosen earlier is gone: take any.
      if (err?.name !== 'OverconstrainedError' && err?.name !== 'NotFoundError') throw err;
      fresh = await navigator.mediaDevices.getUserMedia(constraints(false));
    }
    lobby.error = null;
  } catch (err) {
    const denied = err?.name === 'NotAllowedError' || err?.name === 'SecurityError';
    lobby.error = denied ? ERROR_TEXT.media_denied : ERROR_TEXT.media_unavailable;
  }
  for (const t of fresh?.getTracks() ?? []) lobby.stream.addTrack(t);
  renderPreview();
  await renderDevices();
}

/** `base` (true or the capture constraints) for the device `deviceId`, if one is chosen. */
function deviceConstraint(base, deviceId) {
  if (!deviceId) return base;
  return { ...(base === true ? {} : base), deviceId: { exact: deviceId } };
}

/**
 * The stream to publish: the lobby's, once its devices are open; null when none of them could be
 * opened (the client then asks the browser itself, and says why that fails).
 */
async function lobbyMedia() {
  if (!WANTS.audio && !WANTS.video) return new MediaStream();
  if (!liveTracks(lobby.stream).length) await openDevices();
  return liveTracks(lobby.stream).length ? lobby.stream : null;
}

function liveTracks(stream) {
  return stream?.getTracks().filter((t) => t.readyState === 'live') ?? [];
}

/** After a call: the camera goes off, then comes back for the lobby's preview. */
function reopenLobbyMedia() {
  lobby.chain = lobby.chain.then(() => {
    for (const t of lobby.stream?.getTracks() ?? []) t.stop();
    lobby.stream = null;
    renderPreview();
  });
  openDevices();
}

function renderPreview() {
  const video = $('#preview');
  const hasVideo = liveTracks(lobby.stream).some((t) => t.kind === 'video');
  $('#preview-frame').dataset.video = hasVideo ? 'on' : 'off';
  // Only the lobby shows it (the call has the own tile); set anew, as its tracks may be new.
  if (hasVideo && document.body.dataset.state === 'idle') {
    video.srcObject = lobby.stream;
    video.play().catch(() => {});
  } else {
    video.srcObject = null;
  }
  const note = $('#preview-note');
  note.textContent = lobby.error ?? (WANTS.video ? 'Camera off' : 'No camera: audio only');
  note.classList.toggle('problem', lobby.error !== null);
}

/** Fills the selects with the devices the browser lists, the ones in use selected. */
async function renderDevices() {
  let devices = [];
  try {
    devices = (await navigator.mediaDevices?.enumerateDevices?.()) ?? [];
  } catch {
    // Without a list the selects stay as they are.
  }
  const fill = (select, kind, label) => {
    const found = devices.filter((d) => d.kind === kind && d.deviceId);
    const inUse = liveTracks(lobby.stream).find((t) => t.kind === kind.replace('input', ''));
    const current = inUse?.getSettings().deviceId ?? select.value;
    select.replaceChildren(
      ...found.map((d, i) => {
        const option = document.createElement('option');
        option.value = d.deviceId;
        option.textContent = d.label || `${label} ${i + 1}`;
        return option;
      }),
    );
    if (found.some((d) => d.deviceId === current)) select.value = current;
    select.disabled = found.length === 0;
    if (found.length === 0) {
      const none = document.createElement('option');
      none.textContent = `No ${label.toLowerCase()} found`;
      select.append(none);
    }
  };
  fill($('#camera-select'), 'videoinput', 'Camera');
  fill($('#microphone-select'), 'audioinput', 'Microphone');
}

// ---- client events --------------------------------------------------------------------------

client.addEventListener('local-stream', (ev) => {
  const video = $('#local');
  // Without a camera the tile shows the avatar (and an empty stream would never load).
  const hasVideo = ev.detail.stream.getVideoTracks().length > 0;
  $('#self').dataset.video = hasVideo ? 'on' : 'off';
  video.srcObject = hasVideo ? ev.detail.stream : null;
  if (hasVideo) video.play().catch(() => {});
  renderControls();
});

client.addEventListener('local-mute', renderControls);

client.addEventListener('track-muted', (ev) => {
  if (ev.detail.local) return;
  const tile = tileFor(ev.detail.participantId);
  const p = client.participants.get(ev.detail.participantId);
  if (tile && p) showMuted(tile, p);
});

client.addEventListener('speakers', showSpeakers);

client.addEventListener('data', (ev) => {
  const { from, name, payload, direct } = ev.detail;
  if (!payload || payload.kind !== 'chat' || typeof payload.text !== 'string') return;
  addChatMessage({ from, name: name || client.participants.get(from)?.name || 'Guest', text: payload.text, direct });
});

client.addEventListener('data-state', renderChatForm);

client.addEventListener('participants-changed', () => {
  renderTiles();
  renderScreens();
  renderChatRecipients();
});

client.addEventListener('remote-stream', (ev) => {
  const tile = tileFor(ev.detail.participantId);
  if (tile) attachStream(tile, ev.detail.stream);
  renderScreens();
});

client.addEventListener('stream-state', (ev) => {
  const { participantId, trackId } = ev.detail;
  const screen = isScreenTrack(participantId, trackId);
  const tile = participantId ? (screen ? screenTileFor(participantId) : tileFor(participantId)) : null;
  if (tile) showStreamState(tile, ev.detail);
});

client.addEventListener('screen-share', () => {
  renderScreens();
  renderControls();
});

client.addEventListener('connection-state', (ev) => {
  const text = { new: 'Connecting…', connecting: 'Connecting…', connected: 'Connected',
    disconnected: 'Reconnecting…', failed: 'Connection failed', closed: '' };
  setStatus(text[ev.detail.state] ?? '', ev.detail.state);
});

client.addEventListener('error', (ev) => {
  const { code, message } = ev.detail;
  if (CHAT_ERROR_TEXT[code] && client.state === 'joined') {
    showChatError(CHAT_ERROR_TEXT[code]);
    return;
  }
  if (code === 'forbidden' && client.state === 'joined') {
    showError(`Not allowed: ${message}`);
    return;
  }
  const text = ERROR_TEXT[code];
  showError(text ? (code === 'invalid_name' ? `${text}: ${message}` : text) : `Error (${code}): ${message}`);
});

client.addEventListener('left', (ev) => {
  setState('idle');
  reopenLobbyMedia();
  const reason = ev.detail.reason;
  if (reason !== 'left') showError(LEFT_TEXT[reason] ?? 'You are no longer in the room.');
});

client.addEventListener('connection-quality', (ev) => {
  const { participantId, quality, local } = ev.detail;
  if (local) {
    document.body.dataset.quality = quality;
    return;
  }
  if (tileFor(participantId)) renderTiles();
});

client.addEventListener('reconnecting', () => setStatus('Reconnecting to the server…', 'reconnecting'));
client.addEventListener('reconnected', (ev) => {
  setStatus('Connected', 'connected');
  if (ev.detail.rejoined) hideError();
});
client.addEventListener('shutting-down', (ev) => {
  const s = ev.detail.drainSeconds;
  showError(
    `The server is restarting: moving the call to another server (this one ends it in ${s} second${s === 1 ? '' : 's'}).`,
  );
});

// ---- tiles ----------------------------------------------------------------------------------

function tileFor(id) {
  return $('#remotes').querySelector(`.tile[data-participant-id="${CSS.escape(id)}"]`);
}

function renderTiles() {
  const grid = $('#remotes');
  for (const tile of [...grid.children]) {
    if (!client.participants.has(tile.dataset.participantId)) {
      const video = tile.querySelector('video');
      client.unobserveVideo(video);
      video.srcObject = null;
      tile.remove();
    }
  }
  for (const [id, p] of client.participants) {
    let tile = tileFor(id);
    if (!tile) {
      tile = createTile(id);
      grid.append(tile);
      attachStream(tile, p.stream);
      client.observeVideo(tile.querySelector('video'));
      for (const s of client.streamStates.values()) {
        if (s.participantId === id && !isScreenTrack(id, s.trackId)) showStreamState(tile, s);
      }
    }
    const label = p.name || 'Guest';
    tile.querySelector('.name').textContent = label;
    tile.querySelector('.avatar').textContent = initials(label);
    showMuted(tile, p);
    const pinned = client.pinned.has(id);
    tile.classList.toggle('pinned', pinned);
    const pin = tile.querySelector('.pin');
    pin.textContent = pinned ? 'Unpin' : 'Pin';
    pin.setAttribute('aria-pressed', String(pinned));
    tile.classList.toggle('speaking', client.speakers.some((s) => s.participantId === id));
    // Its signalling dropped, or nothing has come from it for a while (its network is down).
    const reconnecting = p.reconnecting === true || p.quality === 'lost';
    tile.classList.toggle('reconnecting', reconnecting);
    tile.dataset.quality = p.quality ?? '';
    tile.title = reconnecting ? `${label} is reconnecting…` : '';
  }
  // The own tile counts too.
  $('#grid').dataset.count = String(client.participants.size + 1);
  $('#empty').hidden = client.participants.size > 0 || client.state === 'idle';
}

function createTile(id) {
  const tile = document.createElement('figure');
  tile.className = 'tile';
  tile.dataset.participantId = id;
  tile.dataset.video = 'off';

  const frame = document.createElement('div');
  frame.className = 'frame';
  const video = document.createElement('video');
  video.autoplay = true;
  video.playsInline = true;
  const avatar = document.createElement('div');
  avatar.className = 'avatar';
  avatar.setAttribute('aria-hidden', 'true');
  const unmute = document.createElement('button');
  unmute.type = 'button';
  unmute.className = 'unmute';
  unmute.textContent = 'Tap to unmute';
  unmute.hidden = true;
  unmute.addEventListener('click', () => {
    video.muted = false;
    video.play().then(() => { unmute.hidden = true; }, () => {});
  });
  const badge = document.createElement('div');
  badge.className = 'badge';
  badge.hidden = true;
  const layer = document.createElement('span');
  layer.className = 'layer';
  layer.title = 'Simulcast layer received';
  const size = document.createElement('span');
  size.className = 'size';
  badge.append(layer, size);
  const paused = document.createElement('div');
  paused.className = 'paused';
  paused.hidden = true;
  const mutes = document.createElement('div');
  mutes.className = 'mutes';
  mutes.append(muteBadge('cam', 'Camera off', CAM_OFF_ICON));
  video.addEventListener('resize', () => updateBadge(tile));
  frame.append(video, avatar, paused, badge, mutes, unmute);

  // The name, and next to it a crossed microphone while the participant is muted.
  const caption = document.createElement('figcaption');
  caption.className = 'caption';
  const name = document.createElement('span');
  name.className = 'name';
  caption.append(name, muteBadge('mic', 'Microphone muted', MIC_OFF_ICON));
  // Pinning shows the tile large and asks the server to favour its video.
  const pin = document.createElement('button');
  pin.type = 'button';
  pin.className = 'pin';
  pin.title = 'Show large and keep its video sharp';
  pin.addEventListener('click', () => {
    client.pin(id, !client.pinned.has(id));
    renderTiles();
  });
  caption.append(pin);
  tile.append(frame, caption);
  watchFirstFrame(video);
  return tile;
}

/** Shows `stream` in the tile; reloads the element when the stream's tracks changed. */
function attachStream(tile, stream) {
  const video = tile.querySelector('video');
  const hasVideo = stream.getVideoTracks().length > 0;
  tile.dataset.video = hasVideo ? 'on' : 'off';
  updateBadge(tile);
  if (stream.getTracks().length === 0) {
    video.srcObject = null;
    return;
  }
  video.srcObject = stream;
  video.play().catch(() => {
    // Autoplay with sound needs a user gesture (e.g. after `autojoin=1`): play muted meanwhile.
    video.muted = true;
    tile.querySelector('.unmute').hidden = false;
    video.play().catch(() => {});
  });
}

const MIC_OFF_ICON =
  '<path d="M15 9.3V5a3 3 0 0 0-5.7-1.3M9 9v2a3 3 0 0 0 5.1 2.1M19 11a7 7 0 0 1-1.1 3.8M5 11a7 7 0 0 0 11.2 5.6M12 18v4M8 22h8M3 3l18 18"/>';
const CAM_OFF_ICON =
  '<path d="M10.7 6H14a2 2 0 0 1 2 2v3.3l1 1L22 7v10M16 16a2 2 0 0 1-2 2H4a2 2 0 0 1-2-2V8a2 2 0 0 1 2-2h2M3 3l18 18"/>';

function muteBadge(kind, label, iconPaths) {
  const badge = document.createElement('span');
  badge.className = `muted-badge ${kind}`;
  badge.title = label;
  badge.setAttribute('role', 'img');
  badge.setAttribute('aria-label', label);
  badge.innerHTML = `<svg class="icon" viewBox="0 0 24 24" aria-hidden="true">${iconPaths}</svg>`;
  badge.hidden = true;
  return badge;
}

/** Shows which of the participant's tracks are muted (`track_muted`): badges, and the avatar for video. */
function showMuted(tile, p) {
  const mutedKinds = new Set([...p.muted].map((trackId) => p.tracks.get(trackId)).filter(Boolean));
  const audio = mutedKinds.has('audio');
  const video = mutedKinds.has('video');
  tile.dataset.audioMuted = String(audio);
  tile.dataset.videoMuted = String(video);
  tile.querySelector('.muted-badge.mic').hidden = !audio;
  tile.querySelector('.muted-badge.cam').hidden = !video;
  updateBadge(tile);
}

/** Highlights the tiles (and the self view) of whoever is speaking now. */
function showSpeakers() {
  const speaking = new Set(client.speakers.map((s) => s.participantId));
  for (const tile of $('#remotes').querySelectorAll('.tile')) {
    tile.classList.toggle('speaking', speaking.has(tile.dataset.participantId));
  }
  $('#self').classList.toggle('speaking', client.participantId !== null && speaking.has(client.participantId));
}

const PAUSED_TEXT = {
  bandwidth: 'Paused (bandwidth)',
  publisher: 'Paused (no video from the sender)',
  codec: 'This browser cannot play the video format the sender uses',
};

/** Shows what the server says about the tile's video: the layer received, or why it is paused. */
function showStreamState(tile, { state, reason, layer }) {
  const paused = state === 'paused';
  tile.dataset.stream = state;
  tile.dataset.layer = paused ? '' : (layer ?? '');
  tile.dataset.pauseReason = paused ? (reason ?? '') : '';
  const overlay = tile.querySelector('.paused');
  overlay.textContent = PAUSED_TEXT[reason] ?? 'Paused';
  // A hidden video is off screen: nobody sees an overlay there. A muted one shows its avatar.
  overlay.hidden = !paused || reason === 'hidden' || reason === 'muted';
  updateBadge(tile);
}

/**
 * The badge, shown while the "Stats" switch is on: simulcast layer received (q, h, f) and the
 * size of the frames shown.
 */
function updateBadge(tile) {
  const video = tile.querySelector('video');
  const badge = tile.querySelector('.badge');
  const layer = tile.dataset.layer ?? '';
  const size = video.videoWidth > 0 ? `${video.videoWidth}\u00d7${video.videoHeight}` : '';
  const layerEl = badge.querySelector('.layer');
  layerEl.textContent = layer;
  layerEl.hidden = !layer;
  badge.querySelector('.size').textContent = size;
  badge.hidden =
    !statsShown() ||
    tile.dataset.stream === 'paused' ||
    tile.dataset.video !== 'on' ||
    tile.dataset.videoMuted === 'true' ||
    (!layer && !size);
}

function watchFirstFrame(video) {
  const seen = () => {
    if (metrics.firstRemoteFrameAt === null && metrics.joinClickedAt !== null) {
      metrics.firstRemoteFrameAt = performance.now();
    }
  };
  if ('requestVideoFrameCallback' in HTMLVideoElement.prototype) video.requestVideoFrameCallback(seen);
  else video.addEventListener('loadeddata', seen, { once: true });
}

function initials(name) {
  const parts = name.trim().split(/\s+/).filter(Boolean);
  const letters = parts.length > 1 ? parts[0][0] + parts[parts.length - 1][0] : (parts[0] ?? '?').slice(0, 2);
  return letters.toUpperCase();
}

// ---- shared screens -------------------------------------------------------------------------

/** Whether `trackId` of participant `id` is a shared screen (by the source the server named). */
function isScreenTrack(id, trackId) {
  const source = client.participants.get(id)?.sources.get(trackId);
  return source === 'screen' || source === 'screen_audio';
}

function screenTileFor(id) {
  return $('#stage').querySelector(`.tile[data-screen-of="${CSS.escape(id)}"]`);
}

/** The stage above the grid: every shared screen (the own one too), large. */
function renderScreens() {
  const stage = $('#stage');
  /** @type {Map<string, {name: string, stream: MediaStream, own: boolean}>} */
  const screens = new Map();
  for (const [id, p] of client.participants) {
    if (p.screenStream.getVideoTracks().length > 0) screens.set(id, { name: p.name || 'Guest', stream: p.screenStream, own: false });
  }
  if (client.screenStream && client.participantId) {
    screens.set(client.participantId, { name: 'You', stream: client.screenStream, own: true });
  }
  for (const tile of [...stage.children]) {
    if (!screens.has(tile.dataset.screenOf)) {
      const video = tile.querySelector('video');
      client.unobserveVideo(video);
      video.srcObject = null;
      tile.remove();
    }
  }
  for (const [id, { name, stream, own }] of screens) {
    let tile = screenTileFor(id);
    if (!tile) {
      tile = createTile(id);
      tile.classList.add('screen');
      tile.dataset.screenOf = id;
      delete tile.dataset.participantId;
      tile.querySelector('.pin').remove();
      tile.querySelector('.caption .muted-badge.mic').remove();
      stage.append(tile);
      // The own screen is muted locally (no echo of its audio) and needs no layer reports.
      if (own) tile.querySelector('video').muted = true;
      else client.observeVideo(tile.querySelector('video'));
    }
    if (tile.querySelector('video').srcObject !== stream) attachStream(tile, stream);
    tile.querySelector('.name').textContent = name;
    tile.querySelector('.avatar').textContent = initials(name);
    tile.setAttribute('aria-label', own ? 'Your shared screen' : `${name}'s shared screen`);
  }
  stage.hidden = screens.size === 0;
}

$('#toggle-screen').addEventListener('click', async () => {
  if (client.screenSharing) {
    client.stopScreenShare();
    return;
  }
  try {
    await client.shareScreen();
  } catch (err) {
    // Cancelling the browser's picker is not worth a banner.
    if (err?.code !== 'media_denied') showError(`Cannot share the screen: ${err?.message ?? err}`);
  }
});

// ---- microphone and camera ------------------------------------------------------------------

$('#toggle-mic').addEventListener('click', () => toggleMute('audio'));
$('#toggle-cam').addEventListener('click', () => toggleMute('video'));

function toggleMute(kind) {
  client.mute(kind, !client.isMuted(kind));
  renderControls();
}

/** The mute buttons follow the client's state; a kind that is not published has no button. */
function renderControls() {
  const stream = client.localStream;
  const controls = [
    ['#toggle-mic', 'audio', 'Mute microphone', 'Unmute microphone'],
    ['#toggle-cam', 'video', 'Turn camera off', 'Turn camera on'],
  ];
  for (const [selector, kind, muteText, unmuteText] of controls) {
    const button = $(selector);
    const muted = client.isMuted(kind);
    button.setAttribute('aria-pressed', String(muted));
    button.title = muted ? unmuteText : muteText;
    button.hidden = !stream || !stream.getTracks().some((t) => t.kind === kind);
  }
  const screenButton = $('#toggle-screen');
  const sharing = client.screenSharing;
  screenButton.hidden = !stream || !navigator.mediaDevices?.getDisplayMedia;
  screenButton.setAttribute('aria-pressed', String(sharing));
  screenButton.title = sharing ? 'Stop sharing' : 'Share screen';
  screenButton.setAttribute('aria-label', screenButton.title);
  const self = $('#self');
  const videoMuted = client.isMuted('video');
  self.dataset.videoMuted = String(videoMuted);
  self.querySelector('.muted-badge.cam').hidden = !videoMuted || self.dataset.video !== 'on';
  self.querySelector('.muted-badge.mic').hidden = !client.isMuted('audio');
  self.querySelector('.avatar').textContent = initials(nameInput.value || 'You');
}

// ---- stats ----------------------------------------------------------------------------------

$('#toggle-stats').addEventListener('click', () => {
  storeSetting(STATS_KEY, statsShown() ? '' : '1');
  renderStats();
});

/** Whether the remote tiles show the layer and resolution received (off unless switched on). */
function statsShown() {
  return readSetting(STATS_KEY) === '1';
}

function renderStats() {
  const shown = statsShown();
  const button = $('#toggle-stats');
  button.setAttribute('aria-pressed', String(shown));
  button.title = shown
    ? 'Hide the simulcast layer and resolution of each video'
    : 'Show the simulcast layer and resolution received on each video';
  document.body.dataset.stats = shown ? 'on' : 'off';
  for (const tile of $('#remotes').querySelectorAll('.tile')) updateBadge(tile);
}

// ---- chat -----------------------------------------------------------------------------------

const CHAT_ERROR_TEXT = {
  rate_limited: 'You are sending too fast: some messages were not delivered.',
  message_too_large: 'That message is too long to send.',
  not_connected: 'Chat is not connected yet. Try again in a moment.',
};
/** Chat starts open where there is room for it next to the videos. */
const WIDE_SCREEN = window.matchMedia('(min-width: 900px)');
const chatState = { open: WIDE_SCREEN.matches, unread: 0, errorTimer: null };

$('#toggle-chat').addEventListener('click', () => setChatOpen(!chatState.open));
$('#chat-close').addEventListener('click', () => {
  setChatOpen(false);
  $('#toggle-chat').focus();
});
$('#chat').addEventListener('keydown', (ev) => {
  if (ev.key === 'Escape' && !WIDE_SCREEN.matches) {
    setChatOpen(false);
    $('#toggle-chat').focus();
  }
});
$('#chat-to').addEventListener('change', renderChatForm);

$('#chat-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const input = $('#chat-input');
  const text = input.value.trim();
  if (!text) return;
  const to = $('#chat-to').value;
  try {
    client.sendChat(text, to ? { to: [to] } : {});
  } catch (err) {
    showChatError(CHAT_ERROR_TEXT[err.code] ?? err.message);
    return;
  }
  input.value = '';
  const toName = to ? (client.participants.get(to)?.name || 'Guest') : null;
  addChatMessage({ from: client.participantId, name: 'You', text, direct: !!to, toName, own: true });
});

function setChatOpen(open) {
  chatState.open = open;
  document.body.classList.toggle('chat-open', open);
  $('#toggle-chat').setAttribute('aria-expanded', String(open));
  if (open) {
    chatState.unread = 0;
    renderUnread();
    scrollChatToEnd();
    if (!WIDE_SCREEN.matches) $('#chat-input').focus();
  }
}

function renderUnread() {
  const badge = $('#chat-unread');
  badge.textContent = chatState.unread > 99 ? '99+' : String(chatState.unread);
  badge.hidden = chatState.unread === 0;
  $('#toggle-chat').setAttribute('aria-label', chatState.unread ? `Chat (${chatState.unread} unread)` : 'Chat');
}

/** Appends a message to the list; keeps the list at the bottom unless the reader scrolled up. */
function addChatMessage({ from, name, text, direct, toName = null, own = false }) {
  const list = $('#chat-messages');
  const atEnd = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  const item = document.createElement('li');
  item.className = 'chat-msg';
  item.classList.toggle('own', own);
  item.classList.toggle('direct', !!direct);
  if (from) item.dataset.from = from;
  const meta = document.createElement('div');
  meta.className = 'chat-meta';
  const who = document.createElement('span');
  who.className = 'chat-from';
  who.textContent = name;
  meta.append(who);
  if (direct) {
    const tag = document.createElement('span');
    tag.className = 'chat-direct';
    tag.textContent = own ? `to ${toName}` : 'direct';
    meta.append(tag);
  }
  const time = document.createElement('time');
  const now = new Date();
  time.dateTime = now.toISOString();
  time.textContent = now.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  meta.append(time);
  const body = document.createElement('p');
  body.className = 'chat-text';
  body.textContent = text;
  item.append(meta, body);
  list.append(item);
  // A long meeting keeps the last few hundred messages.
  while (list.children.length > 500) list.firstElementChild.remove();
  $('#chat-empty').hidden = true;
  if (atEnd || own) scrollChatToEnd();
  if (!own && !chatState.open) {
    chatState.unread++;
    renderUnread();
  }
}

function scrollChatToEnd() {
  const list = $('#chat-messages');
  list.scrollTop = list.scrollHeight;
}

function showChatError(text) {
  const el = $('#chat-error');
  el.textContent = text;
  el.hidden = false;
  clearTimeout(chatState.errorTimer);
  chatState.errorTimer = setTimeout(() => {
    el.hidden = true;
  }, 6000);
  // With the panel closed nobody would see it there.
  if (!chatState.open) showError(text);
}

/** The recipient choice: everyone, or one participant (a direct message). */
function renderChatRecipients() {
  const select = $('#chat-to');
  const chosen = select.value;
  const options = [['', 'Everyone']];
  for (const [id, p] of client.participants) options.push([id, `${p.name || 'Guest'} (direct)`]);
  select.replaceChildren(
    ...options.map(([value, label]) => {
      const option = document.createElement('option');
      option.value = value;
      option.textContent = label;
      return option;
    }),
  );
  select.value = options.some(([value]) => value === chosen) ? chosen : '';
  select.hidden = client.participants.size === 0;
  renderChatForm();
}

function renderChatForm() {
  const ready = client.state === 'joined' && client.dataChannel('reliable')?.readyState === 'open';
  const to = $('#chat-to').value;
  const input = $('#chat-input');
  input.placeholder = !ready
    ? 'Chat connecting…'
    : to
      ? `Message ${client.participants.get(to)?.name || 'Guest'} only`
      : 'Message everyone';
  $('#chat-send').disabled = !ready;
}

function resetChat() {
  $('#chat-messages').replaceChildren();
  $('#chat-empty').hidden = false;
  $('#chat-error').hidden = true;
  chatState.unread = 0;
  renderUnread();
  renderChatRecipients();
}

// ---- page state -----------------------------------------------------------------------------

function setState(state) {
  document.body.dataset.state = state;
  $('#join').disabled = state !== 'idle' || needsInvitation;
  $('#join').textContent = state === 'joining' ? 'Joining…' : 'Join';
  $('#leave').hidden = state === 'idle';
  $('#controls').hidden = state === 'idle';
  if (state === 'idle') {
    $('#local').srcObject = null;
    $('#self').dataset.video = 'off';
    $('#room-label').textContent = '';
    setStatus('', 'idle');
    renderTiles();
    showSpeakers();
  } else if (state === 'joining') {
    setStatus('Connecting…', 'connecting');
    resetChat();
    setChatOpen(WIDE_SCREEN.matches);
  }
  renderControls();
  renderChatForm();
  renderPreview();
  $('#empty').hidden = client.participants.size > 0 || state === 'idle';
}

function setStatus(text, state) {
  const el = $('#status');
  el.textContent = text;
  el.dataset.state = state;
  el.hidden = !text;
}

function showError(text) {
  const banner = $('#error');
  banner.querySelector('.message').textContent = text;
  banner.hidden = false;
}

function hideError() {
  $('#error').hidden = true;
}

function rememberInUrl(room) {
  const url = new URL(location.href);
  url.searchParams.set('room', room);
  url.searchParams.delete('autojoin');
  history.replaceState(null, '', url);
}

function readStoredName() {
  return readSetting(NAME_KEY);
}

function storeName(name) {
  storeSetting(NAME_KEY, name);
}

/** A remembered choice ('' when none). */
function readSetting(key) {
  try {
    return localStorage.getItem(key) ?? '';
  } catch {
    return '';
  }
}

function storeSetting(key, value) {
  try {
    if (value) localStorage.setItem(key, value);
    else localStorage.removeItem(key);
  } catch {
    // Storage may be unavailable (private mode); these are only conveniences.
  }
}

setState('idle');
renderStats();
renderPreview();
if (params.get('autojoin') === '1') join();
else checkInvitationNeeded().then(() => needsInvitation || openDevices());
