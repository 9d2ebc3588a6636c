#!/usr/bin/env node
// End-to-end test of data channels, mute and the speaking indicator with real browsers: two
// headless Chromium processes (P1, P2) join one room on a real SFU through the demo page.
//
//  1. P1 types a chat message into the chat panel and presses Send: it shows in P2's panel with
//     P1's name.
//  2. P1 sends a direct message (`sendChat(text, { to: [P2] })`): P2 gets it marked direct.
//  3. P1 writes a raw envelope claiming another sender (`from`): P2 gets it with P1's id.
//  4. P1 clicks the camera button: P2 gets `track_muted`, shows the muted badge on P1's tile and
//     decodes no frame of P1's video for 2 s. P1 clicks again: P2 decodes P1's video again.
//  5. P1 sends 100 messages at once: the server relays 55 to 65 of them (burst 60) and P1 gets a
//     `rate_limited` error, shown in its chat panel.
//  6. Speaking indicator: P1's microphone plays a speech-like WAV file (written at start,
//     --use-file-for-fake-audio-capture). The server must name P1 in `speakers`, P2 must highlight
//     P1's tile and P1 its self view. P1's microphone button: P2 shows the badge, the highlight
//     goes; unmuted, it comes back.
//  Observed and printed, not asserted: whether the server names P2, whose microphone is Chromium's
//  own fake one (a 20 ms beep twice a second), with the levels measured; and whether P2, leaving
//  and joining again while P1 talks, is told that P1 speaks. With CHAT_VOICE=0 P1 keeps the beep
//  too, and step 6 is only observed (asserted if the server names P1 anyway).
//
// Run it inside a private network namespace where only `lo` exists (see run.sh):
//   SFU_BIN=/path/to/sfu E2E_SCRIPT=chat.js bash run.sh
//
// Environment:
//   SFU_BIN          the server binary (required)
//   CHAT_HTTP_PORT   HTTP/WebSocket port (default 18081)
//   CHAT_UDP_PORT    media UDP port (default 40010)
//   CHROMIUM_PATH    browser binary (default /usr/bin/chromium)
//   CHAT_STATIC_DIR  optional: serve client.js, demo.js, demo.css, index.html from this folder
//                    instead of the server's built-in copies
//   CHAT_SCREENSHOTS optional: a folder for screenshots of both pages at the end
//   CHAT_VOICE=0     P1 keeps Chromium's fake microphone beep instead of the voice file
//   E2E_VERBOSE=1    stream the server's and the pages' logs instead of printing them on failure
//   RUST_LOG         passed to the server (default info)
'use strict';

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { chromium } = require('playwright-core');

const env = process.env;
const config = {
  sfuBin: env.SFU_BIN,
  httpPort: Number(env.CHAT_HTTP_PORT) || 18081,
  udpPort: Number(env.CHAT_UDP_PORT) || 40010,
  chromiumPath: env.CHROMIUM_PATH || '/usr/bin/chromium',
  staticDir: env.CHAT_STATIC_DIR || null,
  screenshots: env.CHAT_SCREENSHOTS || null,
  verbose: env.E2E_VERBOSE === '1',
  room: 'chat-e2e',
};

/** The whole run, setup and teardown included, must fit in this. */
const HARD_TIMEOUT_MS = 90_000;
const HEALTH_TIMEOUT_MS = 15_000;
const JOIN_TIMEOUT_MS = 15_000;
/** Both joined until both decode each other's video and their data channels are open. */
const MEDIA_TIMEOUT_MS = 20_000;
/** A message or a mute until the other page shows it. */
const DELIVERY_TIMEOUT_MS = 5_000;
/** Muted until P1's video on P2 has stood still for FROZEN_FOR_MS. */
const STOP_TIMEOUT_MS = 8_000;
const FROZEN_FOR_MS = 2_000;
/** Unmuted until P2 decodes P1's video again. */
const RESUME_TIMEOUT_MS = 10_000;
/** The burst: messages sent, the range the server must relay (burst 60, 30/s refill). */
const BURST_COUNT = 100;
const BURST_MIN = 55;
const BURST_MAX = 65;
/** The burst's deliveries must have stopped changing for this long to be counted. */
const BURST_SETTLE_MS = 1_500;
const BURST_TIMEOUT_MS = 8_000;
/** How long the audio levels are sampled for the speaking observation. */
const LEVEL_WINDOW_MS = 3_000;
const POLL_MS = 200;

const harness = require('./harness');

const { CHROMIUM_ARGS } = harness;


const {
  sleep,
  withTimeout,
  httpStatus,
  runScript,
  spawnLogged,
  stopGroup,
} = harness;
const until = (timeoutMs, probe, intervalMs = POLL_MS) => harness.until(timeoutMs, probe, intervalMs);
/** The last lines of a child's or a page's output, printed on failure. */
class LogTail extends harness.LogTail {
  constructor(label) {
    super(label, config.verbose);
  }
}
const log = (...args) => console.log('chat-e2e:', ...args);

// ---- bookkeeping ------------------------------------------------------------------------------

const results = { passed: 0, failed: 0 };


/**
 * Runs one named check. Most are `soft`: counted, and the run goes on; a failed one the later
 * checks need stops the run.
 */
const check = harness.checker(results);

// ---- the server -------------------------------------------------------------------------------

let server = null;
const serverLog = new LogTail('sfu');

function startServer() {
  // No API keys: development mode, the page fetches its token from /api/dev/token.
  const args = [
    '--http', `127.0.0.1:${config.httpPort}`,
    '--udp-port', String(config.udpPort),
    '--advertise-ip', '127.0.0.1',
    '--workers', '1',
  ];
  log(`starting ${config.sfuBin} ${args.join(' ')}`);
  const childEnv = { ...env, RUST_LOG: env.RUST_LOG || 'info' };
  for (const key of ['SFU_CONFIG', 'SFU_API_KEY', 'SFU_API_SECRET']) delete childEnv[key];
  return spawnLogged(config.sfuBin, args, childEnv, serverLog);
}

async function stopServer() {
  await stopGroup(server);
}

// ---- the browsers -----------------------------------------------------------------------------

/** @type {{name: string, browser: import('playwright-core').Browser, page: import('playwright-core').Page, log: LogTail}[]} */
const peers = [];

async function launchPeer(name, extraArgs = []) {
  // A page served by Playwright counts as coming from outside the machine, which Chromium's
  // local network access checks would keep from reaching the server on 127.0.0.1.
  const args = [...CHROMIUM_ARGS, ...extraArgs];
  if (config.staticDir) args.push('--disable-features=LocalNetworkAccessChecks');
  const browser = await chromium.launch({ executablePath: config.chromiumPath, headless: true, args });
  const peer = { name, browser, page: null, log: new LogTail(name, 100) };
  peers.push(peer);
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  await context.addInitScript(recordSignalsInPage);
  const page = await context.newPage();
  peer.page = page;
  page.on('console', (m) => peer.log.push(`console.${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => peer.log.push(`pageerror: ${e.message}`));
  page.on('crash', () => peer.log.push('page crashed'));
  if (config.staticDir) {
    const types = { '.js': 'text/javascript', '.css': 'text/css', '.html': 'text/html' };
    await page.route(/\/(client\.js|demo\.js|demo\.css|\?.*)$/, (route) => {
      const url = new URL(route.request().url());
      const file = path.join(config.staticDir, url.pathname === '/' ? 'index.html' : url.pathname);
      route.fulfill({ body: fs.readFileSync(file), contentType: types[path.extname(file)] });
    });
  }
  return peer;
}

/**
 * In every page, before its scripts: records the server's `track_muted`, `speakers`, `error`,
 * `stream_state` and `publisher_layers` messages and the `mute` messages sent, each with
 * `performance.now()`.
 */
function recordSignalsInPage() {
  const rec = { received: [], sent: [] };
  window.__chatE2E = rec;
  /** Whether `el` is shown inside the chat panel's message list. */
  window.insidePanel = (el) => {
    const list = document.querySelector('#chat-messages');
    if (!list || !el || !list.contains(el)) return false;
    const a = el.getBoundingClientRect();
    const b = list.getBoundingClientRect();
    return a.width > 0 && a.height > 0 && a.top >= b.top - 1 && a.bottom <= b.bottom + 1 && a.left >= b.left - 1 && a.right <= b.right + 1;
  };
  const send = window.WebSocket.prototype.send;
  window.WebSocket.prototype.send = function (data) {
    if (typeof data === 'string' && data.includes('"type":"mute"')) {
      rec.sent.push({ t: performance.now(), msg: JSON.parse(data) });
    }
    return send.call(this, data);
  };
  const Native = window.WebSocket;
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener('message', (ev) => {
        let m;
        try {
          m = JSON.parse(ev.data);
        } catch {
          return;
        }
        if (['track_muted', 'speakers', 'error', 'stream_state', 'publisher_layers'].includes(m.type)) {
          rec.received.push({ t: performance.now(), msg: m });
          if (rec.received.length > 500) rec.received.shift();
        }
      });
    }
  };
}

/**
 * In a joined page: collects the client's `data` and `error` events, and every 50 ms which tiles
 * (and whether the self view) carry the speaking highlight.
 */
function installInPage() {
  const { client } = window.sfuDemo;
  const rec = window.__chatE2E;
  rec.data = [];
  rec.errors = [];
  rec.highlighted = {};
  rec.selfHighlighted = 0;
  client.addEventListener('data', (ev) => {
    const { from, payload, direct, channel, binary } = ev.detail;
    rec.data.push({ t: performance.now(), from, payload, direct, channel, binary });
  });
  client.addEventListener('error', (ev) => rec.errors.push({ t: performance.now(), ...ev.detail }));
  rec.highlightTimer = setInterval(() => {
    for (const tile of document.querySelectorAll('#remotes .tile.speaking')) {
      const id = tile.dataset.participantId;
      rec.highlighted[id] = (rec.highlighted[id] ?? 0) + 1;
    }
    if (document.querySelector('#self.speaking')) rec.selfHighlighted++;
  }, 50);
}

function pageUrl(name) {
  return `http://127.0.0.1:${config.httpPort}/?room=${config.room}&name=${name}&autojoin=1`;
}

/** In the page: the client's state, the tiles, and per remote track the inbound stats. */
async function snapshotInPage() {
  const { client } = window.sfuDemo;
  const banner = document.querySelector('#error');
  const tiles = [...document.querySelectorAll('#remotes .tile')].map((t) => ({
    id: t.dataset.participantId,
    name: t.querySelector('.name')?.textContent ?? '',
    videoMuted: t.dataset.videoMuted ?? null,
    camBadge: !(t.querySelector('.muted-badge.cam')?.hidden ?? true),
    speaking: t.classList.contains('speaking'),
  }));
  const out = {
    state: client.state,
    participantId: client.participantId,
    channels: Object.fromEntries(['reliable', 'lossy'].map((l) => [l, client.dataChannel(l)?.readyState ?? null])),
    error: banner && !banner.hidden ? banner.textContent.trim() : null,
    tiles,
    video: {},
    audio: {},
  };
  if (!client.pc) return out;
  const stats = await client.pc.getStats();
  const byTrack = new Map();
  stats.forEach((s) => {
    if (s.type === 'inbound-rtp') byTrack.set(s.trackIdentifier, s);
  });
  for (const [id, p] of client.participants) {
    for (const t of p.stream.getTracks()) {
      const s = byTrack.get(t.id);
      if (!s) continue;
      if (t.kind === 'video') {
        out.video[id] = { framesDecoded: s.framesDecoded ?? 0, frameWidth: s.frameWidth ?? 0 };
      } else {
        out.audio[id] = { packetsReceived: s.packetsReceived ?? 0, audioLevel: s.audioLevel ?? null };
      }
    }
  }
  return out;
}

const snapshot = (peer) => withTimeout(peer.page.evaluate(snapshotInPage), 5000, `${peer.name} snapshot`);
const evaluate = (peer, fn, arg) => withTimeout(peer.page.evaluate(fn, arg), 5000, `${peer.name} evaluate`);

async function waitJoined(group) {
  await until(JOIN_TIMEOUT_MS, async () => {
    const snaps = await Promise.all(group.map(snapshot));
    const waiting = snaps
      .map((s, i) => (s.state === 'joined' && s.participantId ? null : `${group[i].name} is ${s.state}${s.error ? ` (${s.error})` : ''}`))
      .filter(Boolean);
    return waiting.length ? { ok: false, why: waiting.join('; ') } : { ok: true };
  });
}

/** P2's frames decoded of P1's video, or null while P2 has none. */
async function framesOf(viewer, publisherId) {
  const s = await snapshot(viewer);
  return s.video[publisherId]?.framesDecoded ?? null;
}

// ---- a voice for P1 ----------------------------------------------------------------------------

let tempDir = null;

/**
 * Writes a WAV file that sounds enough like speech for the server's detector: a 150 Hz voice with
 * harmonics, in syllables of about 250 ms with short gaps, around -20 dBFS. Returns its path.
 */
function writeVoiceWav() {
  const rate = 48_000;
  const seconds = 8;
  const n = rate * seconds;
  const data = Buffer.alloc(n * 2);
  for (let i = 0; i < n; i++) {
    const t = i / rate;
    const syllable = (t * 4) % 1; // 4 syllables a second
    const envelope = syllable < 0.8 ? Math.sin((Math.PI * syllable) / 0.8) ** 0.5 : 0;
    const pitch = 150 * (1 + 0.08 * Math.sin(2 * Math.PI * 0.7 * t));
    let v = 0;
    for (let h = 1; h <= 6; h++) v += Math.sin(2 * Math.PI * pitch * h * t) / h;
    data.writeInt16LE(Math.round(0.18 * envelope * v * 32767), i * 2);
  }
  const header = Buffer.alloc(44);
  header.write('RIFF', 0);
  header.writeUInt32LE(36 + data.length, 4);
  header.write('WAVE', 8);
  header.write('fmt ', 12);
  header.writeUInt32LE(16, 16);
  header.writeUInt16LE(1, 20); // PCM
  header.writeUInt16LE(1, 22); // mono
  header.writeUInt32LE(rate, 24);
  header.writeUInt32LE(rate * 2, 28);
  header.writeUInt16LE(2, 32);
  header.writeUInt16LE(16, 34);
  header.write('data', 36);
  header.writeUInt32LE(data.length, 40);
  tempDir = fs.mkdtempSync(path.join(os.tmpdir(), 'chat-e2e-'));
  const file = path.join(tempDir, 'voice.wav');
  fs.writeFileSync(file, Buffer.concat([header, data]));
  return file;
}

// ---- the scenario -----------------------------------------------------------------------------

const observations = [];

async function scenario() {
  if (!config.sfuBin) throw new Error('SFU_BIN is not set: point it at the sfu server binary');
  if (!fs.existsSync(config.sfuBin)) throw new Error(`SFU_BIN=${config.sfuBin} does not exist`);
  if (!fs.existsSync(config.chromiumPath)) throw new Error(`no browser at ${config.chromiumPath} (set CHROMIUM_PATH)`);

  server = startServer();
  await check('server answers /healthz', async () => {
    const url = `http://127.0.0.1:${config.httpPort}/healthz`;
    let exit = null;
    server.exited.then((e) => (exit = e));
    await until(HEALTH_TIMEOUT_MS, async () => {
      if (exit) return { ok: false, stop: true, why: `server exited early (code ${exit.code}, signal ${exit.signal})` };
      const status = await httpStatus(url, 1000);
      return status === 200 ? { ok: true } : { ok: false, why: `GET /healthz: ${status ?? 'no connection'}` };
    }, 200);
    server.exited.then((e) => {
      if (!shuttingDown) serverLog.push(`server exited during the test (code ${e.code}, signal ${e.signal})`);
    });
  });

  const voice = env.CHAT_VOICE === '0' ? null : writeVoiceWav();
  const p1Args = voice ? [`--use-file-for-fake-audio-capture=${voice}`] : [];
  const [p1, p2] = await Promise.all([launchPeer('P1', p1Args), launchPeer('P2')]);
  const ids = {};

  await check('P1 and P2 join, decode each other and open both data channels', async () => {
    // P2 first: the server tells who speaks only when that changes, so P2 must be in the room
    // before P1's voice starts (see observeLateJoiner).
    await p2.page.goto(pageUrl(p2.name), { timeout: JOIN_TIMEOUT_MS });
    await waitJoined([p2]);
    await p1.page.goto(pageUrl(p1.name), { timeout: JOIN_TIMEOUT_MS });
    await waitJoined([p1]);
    for (const p of [p1, p2]) {
      await evaluate(p, installInPage);
      ids[p.name] = (await snapshot(p)).participantId;
    }
    let first = null;
    await until(MEDIA_TIMEOUT_MS, async () => {
      const snaps = await Promise.all([p1, p2].map(snapshot));
      if (!first) first = snaps;
      const wrong = [];
      snaps.forEach((s, i) => {
        const me = [p1, p2][i];
        const other = me === p1 ? p2 : p1;
        const otherId = ids[other.name];
        const tile = s.tiles.find((t) => t.id === otherId);
        if (!tile || tile.name !== other.name) wrong.push(`${me.name} has no tile named ${other.name}`);
        const frames = s.video[otherId]?.framesDecoded ?? 0;
        if (frames < 5) wrong.push(`${me.name} decoded ${frames} frames of ${other.name}`);
        for (const [label, state] of Object.entries(s.channels)) {
          if (state !== 'open') wrong.push(`${me.name}'s ${label} channel is ${state}`);
        }
      });
      return wrong.length ? { ok: false, why: wrong.join('; ') } : { ok: true };
    });
    return `P1 is ${ids.P1}, P2 is ${ids.P2}`;
  });

  await check('a chat message typed and sent in P1\'s panel shows in P2\'s with P1\'s name', async () => {
    const text = `hello from P1 ${Date.now()}`;
    await p1.page.fill('#chat-input', text, { timeout: 5000 });
    await p1.page.click('#chat-send', { timeout: 5000 });
    const sentAt = Date.now();
    const seen = await until(DELIVERY_TIMEOUT_MS, async () => {
      const items = await evaluate(p2, () =>
        [...document.querySelectorAll('#chat-messages .chat-msg')].map((li) => ({
          from: li.dataset.from ?? null,
          name: li.querySelector('.chat-from')?.textContent ?? '',
          text: li.querySelector('.chat-text')?.textContent ?? '',
          direct: li.classList.contains('direct'),
          visible: insidePanel(li),
        })),
      );
      const item = items.find((i) => i.text === text);
      if (!item) return { ok: false, why: `P2's panel has ${JSON.stringify(items)}` };
      if (item.name !== 'P1' || item.from !== ids.P1 || item.direct) {
        return { ok: false, stop: true, why: `shown as ${JSON.stringify(item)}` };
      }
      if (!item.visible) return { ok: false, stop: true, why: 'the message is in P2\'s panel but not visible' };
      return { ok: true, ms: Date.now() - sentAt };
    }, 100);
    const own = await evaluate(p1, (t) => {
      const li = [...document.querySelectorAll('#chat-messages .chat-msg.own')].find(
        (x) => x.querySelector('.chat-text')?.textContent === t,
      );
      return { shown: !!li && insidePanel(li), inputEmpty: document.querySelector('#chat-input').value === '' };
    }, text);
    if (!own.shown || !own.inputEmpty) throw new Error(`P1's own panel: ${JSON.stringify(own)}`);
    return `shown on P2 within ${seen.ms} ms`;
  }, { soft: true });

  await check('a direct message (sendChat with to: [P2]) arrives marked direct', async () => {
    const text = `just for P2 ${Date.now()}`;
    await evaluate(p1, ([t, to]) => window.sfuDemo.client.sendChat(t, { to: [to] }), [text, ids.P2]);
    await until(DELIVERY_TIMEOUT_MS, async () => {
      const got = await evaluate(p2, (t) => {
        const ev = window.__chatE2E.data.find((d) => d.payload?.text === t);
        const li = [...document.querySelectorAll('#chat-messages .chat-msg')].find(
          (x) => x.querySelector('.chat-text')?.textContent === t,
        );
        return { ev: ev ?? null, direct: li?.classList.contains('direct') ?? null, tag: li?.querySelector('.chat-direct')?.textContent ?? null };
      }, text);
      if (!got.ev) return { ok: false, why: 'not received' };
      const { from, direct, payload, channel } = got.ev;
      if (from !== ids.P1 || direct !== true || payload.kind !== 'chat' || channel !== 'reliable') {
        return { ok: false, stop: true, why: `received as ${JSON.stringify(got.ev)}` };
      }
      if (got.direct !== true || got.tag !== 'direct') {
        return { ok: false, why: `P2's panel shows it as ${JSON.stringify({ direct: got.direct, tag: got.tag })}` };
      }
      return { ok: true };
    }, 100);
  }, { soft: true });

  await check('a spoofed "from" in a raw envelope is replaced with P1\'s id', async () => {
    const marker = `spoof-${Date.now()}`;
    await evaluate(p1, ([m, claimed]) => {
      const envelope = { from: claimed, payload: { kind: 'probe', marker: m } };
      window.sfuDemo.client.dataChannel('reliable').send(JSON.stringify(envelope));
    }, [marker, ids.P2]);
    const got = await until(DELIVERY_TIMEOUT_MS, async () => {
      const ev = await evaluate(p2, (m) => window.__chatE2E.data.find((d) => d.payload?.marker === m) ?? null, marker);
      if (!ev) return { ok: false, why: 'not received' };
      if (ev.from !== ids.P1 || ev.direct) return { ok: false, stop: true, why: `received as ${JSON.stringify(ev)}` };
      return { ok: true, ev };
    }, 100);
    return `claimed ${ids.P2}, delivered from ${got.ev.from}`;
  }, { soft: true });

  let p1VideoTrack = null;
  const muted = await check('P1 mutes its camera with the button: P2 shows the badge and stops decoding', async () => {
    await p1.page.click('#toggle-cam', { timeout: 5000 });
    const clickedAt = Date.now();
    const local = await evaluate(p1, () => ({
      pressed: document.querySelector('#toggle-cam').getAttribute('aria-pressed'),
      enabled: window.sfuDemo.client.localStream.getVideoTracks().map((t) => t.enabled),
      sent: window.__chatE2E.sent.map((s) => s.msg),
    }));
    const sent = local.sent.filter((m) => m.muted === true);
    if (local.pressed !== 'true') throw new Error(`the button's aria-pressed is ${local.pressed}`);
    if (local.enabled.some((e) => e)) throw new Error('P1\'s camera track is still enabled');
    if (sent.length !== 1 || !sent[0].track_id.startsWith(`${ids.P1}-`)) {
      throw new Error(`P1 sent ${JSON.stringify(local.sent)}, want one mute of its own video track`);
    }
    p1VideoTrack = sent[0].track_id;
    const badgeMs = await until(DELIVERY_TIMEOUT_MS, async () => {
      const [s, rec] = await Promise.all([
        snapshot(p2),
        evaluate(p2, () => window.__chatE2E.received.filter((r) => r.msg.type === 'track_muted').map((r) => r.msg)),
      ]);
      const msg = rec.find((m) => m.track_id === p1VideoTrack && m.muted === true);
      const tile = s.tiles.find((t) => t.id === ids.P1);
      if (!msg) return { ok: false, why: `P2 got track_muted ${JSON.stringify(rec)}` };
      if (msg.participant_id !== ids.P1) return { ok: false, stop: true, why: `track_muted names ${msg.participant_id}` };
      if (!tile?.camBadge || tile.videoMuted !== 'true') return { ok: false, why: `P2's tile of P1: ${JSON.stringify(tile)}` };
      return { ok: true, ms: Date.now() - clickedAt };
    }, 100);
    const own = await evaluate(p1, (track) =>
      window.__chatE2E.received.some((r) => r.msg.type === 'track_muted' && r.msg.track_id === track && r.msg.muted),
    p1VideoTrack);
    if (!own) throw new Error('P1 itself got no track_muted for its camera');
    // In-flight frames may still decode: wait for FROZEN_FOR_MS without a single new one.
    let frozenAfter = null;
    let last = await framesOf(p2, ids.P1);
    let stillSince = Date.now();
    await until(STOP_TIMEOUT_MS, async () => {
      const now = await framesOf(p2, ids.P1);
      if (now !== last) {
        last = now;
        stillSince = Date.now();
        return { ok: false, why: `P2 still decodes P1's video (${now} frames)` };
      }
      if (Date.now() - stillSince < FROZEN_FOR_MS) return { ok: false, why: `P2's frames stood still for ${Date.now() - stillSince} ms only` };
      frozenAfter = stillSince - clickedAt;
      return { ok: true };
    }, 250);
    return `${p1VideoTrack}: badge after ${badgeMs.ms} ms; last frame decoded ${Math.max(0, frozenAfter)} ms after the click, none for ${FROZEN_FOR_MS} ms since (at ${last})`;
  }, { soft: true });

  await check('P1 unmutes its camera: P2 hides the badge and decodes P1 again', async () => {
    if (!muted) throw new Error('skipped: the mute check failed');
    const before = await framesOf(p2, ids.P1);
    // Page clocks at the click, to put both pages' messages on one time line.
    const [t1, t2] = await Promise.all([evaluate(p1, () => performance.now()), evaluate(p2, watchResumeInPage, ids.P1)]);
    await p1.page.click('#toggle-cam', { timeout: 5000 });
    const clickedAt = Date.now();
    const pressed = await evaluate(p1, () => document.querySelector('#toggle-cam').getAttribute('aria-pressed'));
    if (pressed !== 'false') throw new Error(`the button's aria-pressed is ${pressed}`);
    let badgeGoneMs = null;
    await until(RESUME_TIMEOUT_MS, async () => {
      const s = await snapshot(p2);
      const tile = s.tiles.find((t) => t.id === ids.P1);
      if (badgeGoneMs === null && tile && !tile.camBadge && tile.videoMuted === 'false') badgeGoneMs = Date.now() - clickedAt;
      const frames = s.video[ids.P1]?.framesDecoded ?? 0;
      if (badgeGoneMs === null) return { ok: false, why: `P2's tile of P1: ${JSON.stringify(tile)}` };
      if (frames < before + 10) return { ok: false, why: `P2 decoded ${frames - before} new frames of P1` };
      return { ok: true };
    });
    const tenFramesMs = Date.now() - clickedAt;
    const timeline = await resumeTimeline(p1, t1, p2, t2);
    return `badge gone after ${badgeGoneMs} ms, 10 new frames after ${tenFramesMs} ms; ${timeline}`;
  }, { soft: true });

  await check(`a burst of ${BURST_COUNT} messages: P2 gets ${BURST_MIN} to ${BURST_MAX}, P1 gets rate_limited`, async () => {
    // The bucket refills at 30/s: after the earlier messages and a pause it is full again.
    await sleep(2500);
    const run = `burst-${Date.now()}`;
    const sent = await evaluate(p1, ([r, n]) => {
      const { client } = window.sfuDemo;
      let ok = 0;
      for (let i = 0; i < n; i++) {
        client.sendData({ kind: 'burst', run: r, i });
        ok++;
      }
      return ok;
    }, [run, BURST_COUNT]);
    if (sent !== BURST_COUNT) throw new Error(`P1 could send only ${sent}`);
    let count = -1;
    let changedAt = Date.now();
    await until(BURST_TIMEOUT_MS, async () => {
      const n = await evaluate(p2, (r) => window.__chatE2E.data.filter((d) => d.payload?.run === r).length, run);
      if (n !== count) {
        count = n;
        changedAt = Date.now();
      }
      const settled = Date.now() - changedAt >= BURST_SETTLE_MS;
      return settled && count > 0 ? { ok: true } : { ok: false, why: `P2 has ${count} so far` };
    }, 100);
    const p1State = await evaluate(p1, () => ({
      events: window.__chatE2E.errors.map((e) => e.code),
      chatError: document.querySelector('#chat-error').hidden ? null : document.querySelector('#chat-error').textContent,
    }));
    const problems = [];
    if (count < BURST_MIN || count > BURST_MAX) problems.push(`P2 received ${count}`);
    if (!p1State.events.includes('rate_limited')) problems.push(`P1's error events: ${JSON.stringify(p1State.events)}`);
    if (!p1State.chatError) problems.push('P1\'s chat panel shows no error');
    if (problems.length) throw new Error(problems.join('; '));
    const limitErrors = p1State.events.filter((c) => c === 'rate_limited').length;
    return `P2 received ${count} of ${BURST_COUNT}; P1 got ${limitErrors} rate_limited event(s), panel says "${p1State.chatError}"`;
  }, { soft: true });

  if (voice) {
    await checkSpeaking(p1, p2, ids);
    await observeBeep(p2, p1, ids);
    await observeLateJoiner(p1, p2, ids);
  } else {
    await observeBeep(p1, p2, ids);
  }
  for (const line of observations) log(`observed: ${line}`);

  if (config.screenshots) {
    fs.mkdirSync(config.screenshots, { recursive: true });
    for (const p of [p1, p2]) {
      await p.page.screenshot({ path: path.join(config.screenshots, `chat-${p.name}.png`), timeout: 10_000 }).catch(() => {});
    }
  }
}

/** In P2's page: from now on, notes when the first new frame of `publisherId`'s video decodes. */
function watchResumeInPage(publisherId) {
  const { client } = window.sfuDemo;
  const t0 = performance.now();
  const w = { first: null };
  window.__resume = w;
  const track = client.participants.get(publisherId)?.stream.getVideoTracks()[0];
  const frames = async () => {
    let n = null;
    (await client.pc.getStats()).forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'video' && track && s.trackIdentifier === track.id) n = s.framesDecoded ?? 0;
    });
    return n;
  };
  (async () => {
    const start = await frames();
    while (performance.now() - t0 < 15_000) {
      const n = await frames();
      if (n !== null && start !== null && n > start) {
        w.first = performance.now();
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  })();
  return t0;
}

/** What happened after the unmute click, in ms from it: the messages of both pages and the first frame. */
async function resumeTimeline(p1, t1, p2, t2) {
  const since = (t0) => (r) => ({ at: Math.round(r.t - t0), msg: r.msg });
  const [r1, r2, first] = await Promise.all([
    evaluate(p1, (t0) => window.__chatE2E.received.filter((r) => r.t >= t0), t1),
    evaluate(p2, (t0) => window.__chatE2E.received.filter((r) => r.t >= t0), t2),
    evaluate(p2, () => window.__resume?.first ?? null),
  ]);
  const events = [
    ...r1.map(since(t1)).map((e) => ({ ...e, who: 'P1' })),
    ...r2.map(since(t2)).map((e) => ({ ...e, who: 'P2' })),
  ].filter((e) => e.msg.type !== 'speakers');
  if (first !== null) events.push({ at: Math.round(first - t2), who: 'P2', msg: { type: 'first frame decoded' } });
  events.sort((a, b) => a.at - b.at);
  const brief = (m) => {
    if (m.type === 'publisher_layers') return `publisher_layers [${m.active}]`;
    if (m.type === 'stream_state') return `stream_state ${m.state}${m.layer ? `:${m.layer}` : ''}${m.reason ? `:${m.reason}` : ''}`;
    if (m.type === 'track_muted') return `track_muted ${m.muted}`;
    return m.type;
  };
  return `after the click: ${events.map((e) => `${e.who} +${e.at} ms ${brief(e.msg)}`).join(', ')}`;
}

/** Which speakers messages a page got, and how often it showed the speaking highlight. */
const speakingRecord = (peer) =>
  evaluate(peer, () => ({
    speakers: window.__chatE2E.received.filter((r) => r.msg.type === 'speakers').map((r) => r.msg.speakers),
    highlighted: { ...window.__chatE2E.highlighted },
    selfHighlighted: window.__chatE2E.selfHighlighted,
  }));

/**
 * P1 talks (a voice from a WAV file, well above the server's threshold of a smoothed loudness of
 * about -47 dBov held for 200 ms): the server must name it, P2 must highlight P1's tile and P1 its
 * self view. Muting P1's microphone must take the highlight away and show the badge.
 */
async function checkSpeaking(p1, p2, ids) {
  const spoke = await check('P1 talks: the server names it, P2 highlights its tile, P1 its self view', async () => {
    let last = null;
    await until(DELIVERY_TIMEOUT_MS, async () => {
      const [r1, r2] = await Promise.all([speakingRecord(p1), speakingRecord(p2)]);
      last = { r1, r2 };
      const named = r2.speakers.some((list) => list.some((s) => s.participant_id === ids.P1));
      if (!named) return { ok: false, why: `P2's speakers messages: ${JSON.stringify(r2.speakers)}` };
      if (!r2.highlighted[ids.P1]) return { ok: false, why: 'P2 never highlighted P1\'s tile' };
      if (!r1.selfHighlighted) return { ok: false, why: 'P1 never highlighted its self view' };
      return { ok: true };
    });
    const levels = last.r2.speakers.flat().filter((s) => s.participant_id === ids.P1).map((s) => s.level);
    return `level ${Math.max(...levels)}; highlighted in ${last.r2.highlighted[ids.P1]} samples of 50 ms on P2, ` +
      `${last.r1.selfHighlighted} on P1`;
  }, { soft: true });

  await check('P1 mutes its microphone: P2 shows the badge and the highlight goes; unmuted it comes back', async () => {
    if (!spoke) throw new Error('skipped: P1 was never named as a speaker');
    const tileOfP1 = async () => (await snapshot(p2)).tiles.find((t) => t.id === ids.P1) ?? null;
    const micBadge = () =>
      evaluate(p2, (id) => {
        const tile = document.querySelector(`#remotes .tile[data-participant-id="${id}"]`);
        return { badge: !(tile?.querySelector('.muted-badge.mic')?.hidden ?? true), muted: tile?.dataset.audioMuted ?? null };
      }, ids.P1);
    await p1.page.click('#toggle-mic', { timeout: 5000 });
    const mutedAt = Date.now();
    const pressed = await evaluate(p1, () => document.querySelector('#toggle-mic').getAttribute('aria-pressed'));
    if (pressed !== 'true') throw new Error(`the microphone button's aria-pressed is ${pressed}`);
    await until(DELIVERY_TIMEOUT_MS, async () => {
      const [b, tile] = await Promise.all([micBadge(), tileOfP1()]);
      if (!b.badge || b.muted !== 'true') return { ok: false, why: `P2's mic badge of P1: ${JSON.stringify(b)}` };
      if (tile?.speaking) return { ok: false, why: 'P2 still highlights P1' };
      return { ok: true };
    }, 100);
    const quietAfter = Date.now() - mutedAt;
    await p1.page.click('#toggle-mic', { timeout: 5000 });
    const unmutedAt = Date.now();
    await until(DELIVERY_TIMEOUT_MS, async () => {
      const [b, tile] = await Promise.all([micBadge(), tileOfP1()]);
      if (b.badge || b.muted !== 'false') return { ok: false, why: `P2's mic badge of P1: ${JSON.stringify(b)}` };
      if (!tile?.speaking) return { ok: false, why: 'P2 does not highlight P1 again' };
      return { ok: true };
    }, 100);
    return `badge shown and highlight gone ${quietAfter} ms after muting; highlighted again ${Date.now() - unmutedAt} ms after unmuting`;
  }, { soft: true });
}

/**
 * Chromium's own fake microphone (P2's, or P1's with CHAT_VOICE=0) beeps briefly twice a second.
 * Whether the server names such a participant is only observed and printed, with the levels
 * measured: the beeper's microphone in 20 ms blocks (the granularity of the RFC 6464 levels the
 * server sees) and the audioLevel statistic at both ends.
 */
async function observeBeep(beeper, listener, ids) {
  const id = ids[beeper.name];
  const [own, stat, received] = await Promise.all([
    withTimeout(evaluate(beeper, micBlocksInPage, LEVEL_WINDOW_MS), LEVEL_WINDOW_MS + 6000, 'mic blocks').catch((e) => ({ error: e.message })),
    withTimeout(beeper.page.evaluate(sampleLevelsInPage, { ms: LEVEL_WINDOW_MS, remote: null }), LEVEL_WINDOW_MS + 6000, 'levels').catch((e) => ({ error: e.message })),
    withTimeout(listener.page.evaluate(sampleLevelsInPage, { ms: LEVEL_WINDOW_MS, remote: id }), LEVEL_WINDOW_MS + 6000, 'levels').catch((e) => ({ error: e.message })),
  ]);
  const r = await speakingRecord(listener);
  const naming = r.speakers.filter((list) => list.some((s) => s.participant_id === id));
  const describe = (l) =>
    l?.error
      ? `unavailable (${l.error})`
      : `${l.samples} samples every 20 ms, max ${fmtLevel(l.max)}, mean ${fmtLevel(l.mean)}, ${l.aboveOn} % >= -47 dBov`;
  const blocks = own?.error
    ? `unavailable (${own.error})`
    : `${own.blocks} blocks of 20 ms, ${own.loud} % at or above -47 dBov (max ${own.maxDb} dBov); the server's ` +
      `smoothing (EMA 0.25) of these would peak at a loudness of ${own.peakSmoothed} (speech starts at 80 held for 200 ms)`;
  observations.push(
    `${beeper.name}'s fake microphone (beep), RMS per 20 ms block on ${beeper.name}: ${blocks}`,
    `${beeper.name}'s fake microphone, media-source audioLevel on ${beeper.name}: ${describe(stat)}`,
    `${beeper.name}'s audio as ${listener.name} receives it, inbound-rtp audioLevel: ${describe(received)}`,
    `speakers messages on ${listener.name} naming ${beeper.name}: ${naming.length}; ${listener.name} highlighted ` +
      `${beeper.name}'s tile in ${r.highlighted[id] ?? 0} samples of 50 ms`,
  );
  if (naming.length > 0) {
    await check(`the server named ${beeper.name} (fake microphone beep): ${listener.name} highlighted its tile`, async () => {
      if (!r.highlighted[id]) throw new Error(`${naming.length} speakers messages named ${beeper.name} but the tile was never highlighted`);
      return `${r.highlighted[id]} samples of 50 ms`;
    }, { soft: true });
  } else {
    log(`the fake microphone's beep did not make ${beeper.name} a speaker: not asserted (levels below)`);
  }
}

/**
 * P2 leaves and joins again (Leave, then Join in the form) while P1 keeps talking: is P1 shown as
 * speaking to the newcomer? The server sends `speakers` when the set changes, so this is only
 * observed and printed.
 */
async function observeLateJoiner(p1, p2, ids) {
  const r1 = await speakingRecord(p1);
  const last = r1.speakers[r1.speakers.length - 1] ?? [];
  if (!last.some((s) => s.participant_id === ids.P1)) {
    observations.push('late joiner: not observed (P1 is not speaking now)');
    return;
  }
  let outcome;
  try {
    await p2.page.click('#leave', { timeout: 5000 });
    await until(5000, async () => ((await snapshot(p2)).state === 'idle' ? { ok: true } : { ok: false, why: 'P2 did not leave' }));
    const rejoinT = await evaluate(p2, () => performance.now());
    await p2.page.click('#join', { timeout: 5000 });
    await waitJoined([p2]);
    await evaluate(p2, installInPage);
    const joinedAt = Date.now();
    await until(JOIN_TIMEOUT_MS, async () => {
      const s = await snapshot(p2);
      return s.tiles.some((t) => t.id === ids.P1) ? { ok: true } : { ok: false, why: 'no tile of P1' };
    });
    const seen = await until(3000, async () => {
      const s = await snapshot(p2);
      const n = await evaluate(p2, (t0) => window.__chatE2E.received.filter((r) => r.t >= t0 && r.msg.type === 'speakers').length, rejoinT);
      const tile = s.tiles.find((t) => t.id === ids.P1);
      return tile?.speaking ? { ok: true } : { ok: false, why: `${n} speakers messages since joining again` };
    }).then(
      () => `highlighted ${Date.now() - joinedAt} ms after joining`,
      (err) => `not highlighted within 3 s of joining (${err.message.replace(/^not within 3 s: /, '')}) although P1 kept talking`,
    );
    outcome = seen;
  } catch (err) {
    outcome = `could not rejoin: ${err.message}`;
  }
  observations.push(`late joiner: P2 left and joined again while P1 talked: ${outcome}`);
}

/**
 * In the page: the own microphone's RMS level per 20 ms block for `ms`, through Web Audio, and
 * what the server's detector (loudness = 127 + dBov, EMA weight 0.25) would make of it.
 */
async function micBlocksInPage(ms) {
  const track = window.sfuDemo.client.localStream?.getAudioTracks()[0];
  if (!track) return { error: 'no microphone track' };
  const ctx = new AudioContext();
  await ctx.resume().catch(() => {});
  const source = ctx.createMediaStreamSource(new MediaStream([track]));
  const block = Math.round(ctx.sampleRate * 0.02);
  const levels = [];
  let acc = 0;
  let count = 0;
  // ScriptProcessorNode is deprecated but needs no module file; fine for a measurement.
  const proc = ctx.createScriptProcessor(1024, 1, 1);
  proc.onaudioprocess = (ev) => {
    const data = ev.inputBuffer.getChannelData(0);
    for (let i = 0; i < data.length; i++) {
      acc += data[i] * data[i];
      if (++count === block) {
        const rms = Math.sqrt(acc / block);
        levels.push(rms > 0 ? Math.max(-127, 20 * Math.log10(rms)) : -127);
        acc = 0;
        count = 0;
      }
    }
  };
  const sink = ctx.createGain();
  sink.gain.value = 0;
  source.connect(proc);
  proc.connect(sink);
  sink.connect(ctx.destination);
  await new Promise((resolve) => setTimeout(resolve, ms));
  proc.onaudioprocess = null;
  source.disconnect();
  await ctx.close().catch(() => {});
  if (levels.length === 0) return { error: 'no audio blocks (the audio context did not run)' };
  let smoothed = 0;
  let peakSmoothed = 0;
  for (const db of levels) {
    smoothed += 0.25 * (127 + db - smoothed);
    peakSmoothed = Math.max(peakSmoothed, smoothed);
  }
  return {
    blocks: levels.length,
    loud: Math.round((100 * levels.filter((db) => db >= -47).length) / levels.length),
    maxDb: Math.max(...levels).toFixed(1),
    peakSmoothed: peakSmoothed.toFixed(1),
  };
}

/** In the page: samples an audio level every 20 ms for `ms`, own microphone or a remote's audio. */
async function sampleLevelsInPage({ ms, remote }) {
  const { client } = window.sfuDemo;
  const values = [];
  const end = performance.now() + ms;
  while (performance.now() < end) {
    const stats = await client.pc.getStats();
    let value = null;
    if (remote) {
      const track = client.participants.get(remote)?.stream.getAudioTracks()[0];
      stats.forEach((s) => {
        if (s.type === 'inbound-rtp' && s.kind === 'audio' && track && s.trackIdentifier === track.id) value = s.audioLevel ?? null;
      });
    } else {
      stats.forEach((s) => {
        if (s.type === 'media-source' && s.kind === 'audio') value = s.audioLevel ?? null;
      });
    }
    if (value !== null) values.push(value);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  if (values.length === 0) return { samples: 0, max: null, mean: null, aboveOn: 0 };
  const on = 10 ** (-47 / 20);
  return {
    samples: values.length,
    max: Math.max(...values),
    mean: values.reduce((a, b) => a + b, 0) / values.length,
    aboveOn: Math.round((100 * values.filter((v) => v >= on).length) / values.length),
  };
}

/** A linear audio level (0..1) with its value in dBov. */
function fmtLevel(v) {
  if (v == null) return 'n/a';
  const db = v > 0 ? `${(20 * Math.log10(v)).toFixed(1)} dBov` : '-inf dBov';
  return `${v.toFixed(4)} (${db})`;
}

// ---- main -------------------------------------------------------------------------------------

let shuttingDown = false;

async function shutdown() {
  shuttingDown = true;
  await Promise.all(
    peers.map((peer) => withTimeout(peer.browser.close(), 5000, `closing ${peer.name}`).catch(() => {})),
  );
  await stopServer();
  if (tempDir) fs.rmSync(tempDir, { recursive: true, force: true });
}

function finish(code) {
  console.log(`chat-e2e: ${results.passed} passed, ${results.failed} failed`);
  process.exit(code);
}

runScript({
  scenario,
  shutdown,
  finish,
  results,
  log,
  hardTimeoutMs: HARD_TIMEOUT_MS,
  server: () => server,
  onFailure: () => {
    serverLog.dump();
    for (const peer of peers) peer.log.dump();
  },
});
