// The demo page: a join form, a local preview and one tile per remote participant.
//
// Query parameters: `room`, `name` prefill the form, `token` is passed to the server, `autojoin=1`
// joins at once. `window.sfuDemo` exposes the client and a few timings for tests.

import { SfuClient } from './client.js';

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
};

const LEFT_TEXT = {
  disconnected: 'The connection to the server was lost.',
  timeout: 'The media connection timed out.',
};

// ---- form -----------------------------------------------------------------------------------

const roomInput = $('#room');
const nameInput = $('#name');
roomInput.value = params.get('room') || roomInput.value || 'demo';
nameInput.value = params.get('name') || readStoredName();

$('#join-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  join();
});
$('#leave').addEventListener('click', () => client.leave());
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
  try {
    await client.join({ room, name, token: params.get('token') || undefined });
    metrics.joinedAt = performance.now();
    setState('joined');
  } catch {
    // The `error` event has already put the reason on the banner.
    if (client.state === 'idle') setState('idle');
  }
}

// ---- client events --------------------------------------------------------------------------

client.addEventListener('local-stream', (ev) => {
  const video = $('#local');
  video.srcObject = ev.detail.stream;
  video.play().catch(() => {});
});

client.addEventListener('participants-changed', renderTiles);

client.addEventListener('remote-stream', (ev) => {
  const tile = tileFor(ev.detail.participantId);
  if (tile) attachStream(tile, ev.detail.stream);
});

client.addEventListener('connection-state', (ev) => {
  const text = { new: 'Connecting…', connecting: 'Connecting…', connected: 'Connected',
    disconnected: 'Reconnecting…', failed: 'Connection failed', closed: '' };
  setStatus(text[ev.detail.state] ?? '', ev.detail.state);
});

client.addEventListener('error', (ev) => {
  const { code, message } = ev.detail;
  const text = ERROR_TEXT[code];
  showError(text ? (code === 'invalid_name' ? `${text}: ${message}` : text) : `Error (${code}): ${message}`);
});

client.addEventListener('left', (ev) => {
  setState('idle');
  const reason = ev.detail.reason;
  if (reason !== 'left') showError(LEFT_TEXT[reason] ?? `You were removed from the room (${reason}).`);
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
    }
    const label = p.name || 'Guest';
    tile.querySelector('.name').textContent = label;
    tile.querySelector('.avatar').textContent = initials(label);
  }
  grid.dataset.count = String(client.participants.size);
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
  frame.append(video, avatar, unmute);

  const name = document.createElement('figcaption');
  name.className = 'name';
  tile.append(frame, name);
  watchFirstFrame(video);
  return tile;
}

/** Shows `stream` in the tile; reloads the element when the stream's tracks changed. */
function attachStream(tile, stream) {
  const video = tile.querySelector('video');
  const hasVideo = stream.getVideoTracks().length > 0;
  tile.dataset.video = hasVideo ? 'on' : 'off';
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

// ---- page state -----------------------------------------------------------------------------

function setState(state) {
  document.body.dataset.state = state;
  $('#join').disabled = state !== 'idle';
  $('#join').textContent = state === 'joining' ? 'Joining…' : 'Join';
  $('#leave').hidden = state === 'idle';
  if (state === 'idle') {
    $('#local').srcObject = null;
    $('#room-label').textContent = '';
    setStatus('', 'idle');
    renderTiles();
  } else if (state === 'joining') {
    setStatus('Connecting…', 'connecting');
  }
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
  try {
    return localStorage.getItem(NAME_KEY) ?? '';
  } catch {
    return '';
  }
}

function storeName(name) {
  try {
    localStorage.setItem(NAME_KEY, name);
  } catch {
    // Storage may be unavailable (private mode); the name is only a convenience.
  }
}

setState('idle');
if (params.get('autojoin') === '1') join();
