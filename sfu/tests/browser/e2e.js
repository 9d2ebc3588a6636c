#!/usr/bin/env node
// End-to-end test: three headless Chromium processes join one room on a real SFU and must see and
// hear each other; one's WebSocket is cut while its media flows and it must resume without the
// others seeing it leave or its video stopping; then one leaves and the other two must keep going.
//
// Run it inside a private network namespace where only `lo` exists (see run.sh):
//   SFU_BIN=/path/to/sfu unshare -n bash -c 'ip link set lo up; exec "$@"' bash node e2e.js
//
// Environment:
//   SFU_BIN         the server binary (required)
//   E2E_HTTP_PORT   HTTP/WebSocket port (default 18080)
//   E2E_UDP_PORT    media UDP port (default 40000)
//   E2E_SFU_ARGS    more server flags, space-separated
//   CHROMIUM_PATH   browser binary (default /usr/bin/chromium)
//   E2E_SCREENSHOT  where P1's screenshot goes (default <workspace>/target/e2e-p1.png)
//   E2E_VERBOSE=1   stream the server's and the pages' logs instead of printing them on failure
//   RUST_LOG        passed to the server (default info)
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const { chromium } = require('playwright-core');

const WORKSPACE = path.resolve(__dirname, '..', '..', '..');

const config = {
  sfuBin: process.env.SFU_BIN,
  // More server flags, split on spaces (e.g. `--limits-room-participants-per-worker 1`, which
  // spreads the room over both workers).
  sfuArgs: (process.env.E2E_SFU_ARGS || '').split(' ').filter(Boolean),
  httpPort: Number(process.env.E2E_HTTP_PORT) || 18080,
  udpPort: Number(process.env.E2E_UDP_PORT) || 40000,
  chromiumPath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
  screenshot: path.resolve(process.env.E2E_SCREENSHOT || path.join(WORKSPACE, 'target', 'e2e-p1.png')),
  verbose: process.env.E2E_VERBOSE === '1',
  room: 'e2e',
};

/** The whole run, setup and teardown included, must fit in this. */
const HARD_TIMEOUT_MS = 120_000;
/** Server start until `/healthz` answers 200. */
const HEALTH_TIMEOUT_MS = 20_000;
/** Page load until the server accepted the join. */
const JOIN_TIMEOUT_MS = 15_000;
/** Everybody joined until everybody sees and hears everybody. */
const MEDIA_TIMEOUT_MS = 30_000;
/** One leaves until the others show it. */
const LEAVE_TIMEOUT_MS = 10_000;
/** Between two stats samples that must show media moving. */
const SAMPLE_GAP_MS = 2_000;
const POLL_MS = 250;

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
const log = (...args) => console.log('e2e:', ...args);

// ---- bookkeeping ------------------------------------------------------------------------------

const results = { passed: 0, failed: 0, skipped: 0 };
const PLANNED_CHECKS = 12;


const check = harness.checker(results);

// ---- the server -------------------------------------------------------------------------------

let server = null;
const serverLog = new LogTail('sfu');

function startServer() {
  const args = [
    '--http', `127.0.0.1:${config.httpPort}`,
    '--udp-port', String(config.udpPort),
    '--advertise-ip', '127.0.0.1',
    '--workers', '2',
    ...config.sfuArgs,
  ];
  log(`starting ${config.sfuBin} ${args.join(' ')}`);
  const childEnv = { ...process.env, RUST_LOG: process.env.RUST_LOG || 'info' };
  return spawnLogged(config.sfuBin, args, childEnv, serverLog);
}

async function stopServer() {
  await stopGroup(server);
}

// ---- the browsers -----------------------------------------------------------------------------

/** @type {{name: string, browser: import('playwright-core').Browser, page: import('playwright-core').Page, log: LogTail}[]} */
const peers = [];

async function launchPeer(name) {
  const browser = await chromium.launch({
    executablePath: config.chromiumPath,
    headless: true,
    args: CHROMIUM_ARGS,
  });
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  const peer = { name, browser, page, log: new LogTail(name, 100), firstFrame: null, sockets: [] };
  // Signalling goes through a route that passes everything on, so that a test can cut it.
  await context.routeWebSocket(/\/ws$/, (ws) => {
    const server = ws.connectToServer();
    peer.sockets.push({ ws, server });
  });
  page.on('console', (m) => peer.log.push(`console.${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => peer.log.push(`pageerror: ${e.message}`));
  page.on('crash', () => peer.log.push('page crashed'));
  return peer;
}

function pageUrl(name) {
  return `http://127.0.0.1:${config.httpPort}/?room=${config.room}&name=${name}&autojoin=1`;
}

/** Opens the demo page (which joins at once) and starts timing its first decoded remote frame. */
async function openAndJoin(peer) {
  await peer.page.goto(pageUrl(peer.name), { timeout: JOIN_TIMEOUT_MS });
  peer.firstFrame = peer.page.evaluate(firstDecodedFrameInPage, MEDIA_TIMEOUT_MS).catch(() => null);
}

/** In the page: ms from the join click to the first decoded remote video frame, or null. */
async function firstDecodedFrameInPage(timeoutMs) {
  const { client, metrics } = window.sfuDemo;
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    if (client.pc) {
      const stats = await client.pc.getStats();
      let decoded = false;
      stats.forEach((s) => {
        if (s.type === 'inbound-rtp' && s.kind === 'video' && s.framesDecoded > 0) decoded = true;
      });
      if (decoded) return performance.now() - metrics.joinClickedAt;
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return null;
}

/**
 * In the page: where the own video is shown, whether it is the stream the client publishes, what
 * the device pickers list, and whether any layer badge shows (Stats starts off).
 */
function ownTileInPage() {
  const self = document.querySelector('#self');
  const video = self?.querySelector('video');
  const published = window.sfuDemo.client.localStream;
  return {
    inGrid: !!self?.closest('#grid') && self.classList.contains('tile'),
    label: self?.querySelector('.name')?.textContent ?? '',
    mirrored: video ? getComputedStyle(video).transform !== 'none' : false,
    showsPublished: !!video && video.srcObject === published && published.getVideoTracks().length > 0,
    cameras: document.querySelectorAll('#camera-select option[value]:not([value=""])').length,
    microphones: document.querySelectorAll('#microphone-select option[value]:not([value=""])').length,
    badgeShown: [...document.querySelectorAll('#remotes .tile .badge')].some((b) => !b.hidden),
  };
}

/** In the page: what the client knows, and per remote participant the stats of its tracks. */
async function snapshotInPage() {
  const { client } = window.sfuDemo;
  const tiles = [...document.querySelectorAll('#remotes .tile')].map((t) => ({
    id: t.dataset.participantId,
    name: t.querySelector('.name')?.textContent ?? '',
    hasVideo: !!t.querySelector('video'),
  }));
  const errorBanner = document.querySelector('#error');
  const out = {
    state: client.state,
    participantId: client.participantId,
    tiles,
    error: errorBanner && !errorBanner.hidden ? errorBanner.textContent.trim() : null,
    remotes: {},
    inbound: [],
  };
  if (!client.pc) return out;
  const byTrack = new Map();
  const stats = await client.pc.getStats();
  stats.forEach((s) => {
    if (s.type !== 'inbound-rtp') return;
    const entry = {
      kind: s.kind,
      track: s.trackIdentifier,
      framesDecoded: s.framesDecoded ?? 0,
      frameWidth: s.frameWidth ?? 0,
      frameHeight: s.frameHeight ?? 0,
      packetsReceived: s.packetsReceived ?? 0,
    };
    out.inbound.push(entry);
    byTrack.set(s.trackIdentifier, entry);
  });
  for (const [id, p] of client.participants) {
    const remote = { name: p.name, video: [], audio: [] };
    for (const t of p.stream.getTracks()) {
      const s = byTrack.get(t.id);
      if (s) remote[t.kind].push(s);
    }
    out.remotes[id] = remote;
  }
  return out;
}

const snapshot = (peer) => withTimeout(peer.page.evaluate(snapshotInPage), 5000, `${peer.name} snapshot`);

/** Compares two snapshots of one page: is video decoding and audio arriving from `expected` remotes? */
function judgeMedia(before, after, expectedIds) {
  const problems = [];
  for (const id of expectedIds) {
    const a = before.remotes[id];
    const b = after.remotes[id];
    if (!a || !b) {
      problems.push(`no stream for ${id}`);
      continue;
    }
    const rising = (kind, field) =>
      b[kind].filter((s) => {
        const prev = a[kind].find((p) => p.track === s.track);
        return prev && s[field] > prev[field];
      });
    const video = rising('video', 'framesDecoded').filter((s) => s.frameWidth > 0);
    const audio = rising('audio', 'packetsReceived');
    if (video.length === 0) problems.push(`${b.name || id}: no video frames decoded (${JSON.stringify(b.video)})`);
    if (audio.length === 0) problems.push(`${b.name || id}: no audio packets (${JSON.stringify(b.audio)})`);
  }
  const risingCount = (kind, field) =>
    after.inbound.filter((s) => {
      const prev = before.inbound.find((p) => p.track === s.track && p.kind === kind);
      return s.kind === kind && prev && s[field] > prev[field] && (kind !== 'video' || s.frameWidth > 0);
    }).length;
  const videoCount = risingCount('video', 'framesDecoded');
  const audioCount = risingCount('audio', 'packetsReceived');
  if (videoCount < expectedIds.length) problems.push(`${videoCount} inbound video streams decoding, want ${expectedIds.length}`);
  if (audioCount < expectedIds.length) problems.push(`${audioCount} inbound audio streams receiving, want ${expectedIds.length}`);
  return { problems, videoCount, audioCount };
}

/** Samples every page twice, SAMPLE_GAP_MS apart, until all see media from `expected(peer)`. */
async function expectMedia(group, expected, timeoutMs) {
  let before = await Promise.all(group.map(snapshot));
  let summary = '';
  await until(
    timeoutMs,
    async () => {
      await sleep(SAMPLE_GAP_MS);
      const after = await Promise.all(group.map(snapshot));
      const problems = [];
      const parts = [];
      group.forEach((peer, i) => {
        const verdict = judgeMedia(before[i], after[i], expected(peer));
        problems.push(...verdict.problems.map((p) => `${peer.name}: ${p}`));
        const sizes = Object.values(after[i].remotes)
          .flatMap((r) => r.video.map((v) => `${v.frameWidth}x${v.frameHeight}`))
          .join(',');
        parts.push(`${peer.name} ${verdict.videoCount}v/${verdict.audioCount}a [${sizes}]`);
      });
      before = after;
      summary = parts.join('; ');
      return problems.length ? { ok: false, why: problems.join('; ') } : { ok: true };
    },
    0,
  );
  return summary;
}

async function closePeers() {
  await Promise.all(
    peers.map((peer) => withTimeout(peer.browser.close(), 5000, `closing ${peer.name}`).catch(() => {})),
  );
}

// ---- the scenario -----------------------------------------------------------------------------

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

  const [p1, p2, p3] = await Promise.all(['P1', 'P2', 'P3'].map(launchPeer));
  peers.push(p1, p2, p3);

  await check('three participants join', async () => {
    // P1 and P2 first, so that P3's time to first frame is that of a newcomer to a running room.
    await Promise.all([p1, p2].map(openAndJoin));
    await waitJoined([p1, p2]);
    await openAndJoin(p3);
    const snaps = await waitJoined([p3]);
    return `P3 is ${snaps[0].participantId}`;
  });

  const ids = {};
  for (const peer of peers) ids[peer.name] = (await snapshot(peer)).participantId;
  const othersOf = (peer) => peers.filter((p) => p !== peer).map((p) => ids[p.name]);

  await check('each page shows 2 remote tiles with names', async () => {
    await until(MEDIA_TIMEOUT_MS, async () => {
      const snaps = await Promise.all(peers.map(snapshot));
      const wrong = [];
      snaps.forEach((s, i) => {
        const want = othersOf(peers[i]).sort();
        const got = s.tiles.map((t) => t.id).sort();
        const named = s.tiles.every((t) => /^P[123]$/.test(t.name) && t.hasVideo);
        if (JSON.stringify(want) !== JSON.stringify(got) || !named) {
          wrong.push(`${peers[i].name} has ${JSON.stringify(s.tiles)}${s.error ? ` error banner: ${s.error}` : ''}`);
        }
      });
      return wrong.length ? { ok: false, why: wrong.join('; ') } : { ok: true };
    });
  });

  await check('the own video is a mirrored tile "You" in the grid, from the devices the lobby lists', async () => {
    const own = await Promise.all(peers.map((p) => p.page.evaluate(ownTileInPage)));
    const wrong = own
      .map((o, i) => ({ ...o, name: peers[i].name }))
      .filter((o) => !(o.inGrid && o.label === 'You' && o.mirrored && o.showsPublished && o.cameras > 0 && o.microphones > 0 && !o.badgeShown));
    if (wrong.length) throw new Error(JSON.stringify(wrong));
    return `${own[0].cameras} camera(s), ${own[0].microphones} microphone(s) listed`;
  });

  await check('each page decodes video and receives audio from both others', async () => {
    return expectMedia(peers, othersOf, MEDIA_TIMEOUT_MS);
  });

  await check('server CPU time per forwarded packet over 10 s of a three-way call', async () => {
    const cpu = () => {
      // utime + stime, in clock ticks (1/100 s on Linux), fields 14 and 15 of /proc/PID/stat.
      const stat = fs.readFileSync(`/proc/${server.pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      return Number(fields[11]) + Number(fields[12]);
    };
    const received = async () => {
      const snaps = await Promise.all(peers.map(snapshot));
      return snaps.reduce((n, s) => n + s.inbound.reduce((m, i) => m + i.packetsReceived, 0), 0);
    };
    const [c0, r0] = [cpu(), await received()];
    await sleep(10_000);
    const [c1, r1] = [cpu(), await received()];
    const packets = r1 - r0;
    if (packets <= 0) throw new Error('no packets were received in 10 s');
    const us = ((c1 - c0) * 10_000) / packets;
    log(`server CPU: ${((c1 - c0) / 10).toFixed(2)} s for ${packets} forwarded packets (${us.toFixed(1)} µs per packet, ${Math.round(packets / 10)} packets/s)`);
    return `${us.toFixed(1)} µs per forwarded packet at ${Math.round(packets / 10)} packets/s`;
  });

  await check('time from join click to first decoded remote frame', async () => {
    const times = await Promise.all(peers.map((p) => withTimeout(p.firstFrame, MEDIA_TIMEOUT_MS, p.name)));
    const missing = peers.filter((_, i) => times[i] == null).map((p) => p.name);
    if (missing.length) throw new Error(`no first frame measured for ${missing.join(', ')}`);
    const parts = peers.map((p, i) => `${p.name} ${Math.round(times[i])} ms`);
    log(`time to first remote frame: ${Math.round(times[2])} ms for the newcomer P3`);
    return `${parts.join(', ')} (P1 and P2 waited for the others to join)`;
  });

  await check(`screenshot of P1 at ${path.relative(WORKSPACE, config.screenshot)}`, async () => {
    fs.mkdirSync(path.dirname(config.screenshot), { recursive: true });
    await p1.page.screenshot({ path: config.screenshot, timeout: 10_000 });
  });

  await check("P1's WebSocket is cut: it resumes, the others see no leave and its video does not stop", async () => {
    const watch = (id) => {
      // In P2's page: whether P1 was shown reconnecting or went missing, and the longest gap
      // between two increases of the frames decoded from P1's video.
      const { client } = window.sfuDemo;
      const state = { reconnecting: false, missing: false, longestGapMs: 0, frames: 0 };
      window.cutWatch = state;
      let last = { frames: -1, at: performance.now() };
      // The reconnecting state may last only a few tens of milliseconds: read it from the
      // client's own event rather than from a timer that a busy machine can delay past it.
      const onChange = () => {
        const p = client.participants.get(id);
        if (!p) state.missing = true;
        if (p?.reconnecting) state.reconnecting = true;
      };
      client.addEventListener('participants-changed', onChange);
      window.cutWatchStop = () => client.removeEventListener('participants-changed', onChange);
      const sample = async () => {
        const p = client.participants.get(id);
        if (!p) state.missing = true;
        if (p?.reconnecting) state.reconnecting = true;
        if (client.pc && p) {
          const tracks = new Set(p.stream.getVideoTracks().map((t) => t.id));
          const stats = await client.pc.getStats();
          let frames = 0;
          stats.forEach((s) => {
            if (s.type === 'inbound-rtp' && s.kind === 'video' && tracks.has(s.trackIdentifier)) frames += s.framesDecoded ?? 0;
          });
          const now = performance.now();
          if (frames > last.frames) last = { frames, at: now };
          state.longestGapMs = Math.max(state.longestGapMs, now - last.at);
          state.frames = frames;
        }
      };
      window.cutTimer = setInterval(sample, 50);
    };
    await p2.page.evaluate(watch, ids.P1);
    await p1.page.evaluate(() => {
      const { client } = window.sfuDemo;
      window.cutEvents = [];
      for (const type of ['reconnecting', 'reconnected', 'left']) {
        client.addEventListener(type, () => window.cutEvents.push({ type, at: performance.now() }));
      }
      window.cutAt = performance.now();
    });
    const route = p1.sockets.at(-1);
    if (!route) throw new Error('no WebSocket of P1 was routed');
    await route.server.close();
    await route.ws.close();
    let events = [];
    await until(10_000, async () => {
      events = await p1.page.evaluate(() => window.cutEvents.map((e) => ({ type: e.type, ms: Math.round(e.at - window.cutAt) })));
      if (events.some((e) => e.type === 'left')) return { ok: false, stop: true, why: `P1 left: ${JSON.stringify(events)}` };
      return events.some((e) => e.type === 'reconnected') ? { ok: true } : { ok: false, why: `P1 events ${JSON.stringify(events)}` };
    });
    await until(10_000, async () => {
      const seen = await p2.page.evaluate(() => window.cutWatch);
      return seen.reconnecting ? { ok: true } : { ok: false, why: 'P2 never showed P1 reconnecting' };
    });
    // Media through the cut and a few seconds after it.
    await sleep(3000);
    const seen = await p2.page.evaluate(() => {
      clearInterval(window.cutTimer);
      window.cutWatchStop();
      return window.cutWatch;
    });
    if (seen.missing) throw new Error('P2 lost P1 from its participants');
    if (seen.longestGapMs > 1000) throw new Error(`P1's video stopped at P2 for ${Math.round(seen.longestGapMs)} ms`);
    const s = await snapshot(p1);
    if (s.state !== 'joined' || s.participantId !== ids.P1) throw new Error(`P1 is ${s.state} as ${s.participantId}`);
    const back = events.find((e) => e.type === 'reconnected').ms;
    log(`WebSocket cut: P1 resumed in ${back} ms; longest gap in P1's video at P2: ${Math.round(seen.longestGapMs)} ms`);
    return `resumed in ${back} ms, P2 saw it reconnecting, longest video gap ${Math.round(seen.longestGapMs)} ms`;
  });

  await check('P3 leaves with the Leave button', async () => {
    await p3.page.click('#leave', { timeout: 5000 });
    await until(5000, async () => {
      const s = await snapshot(p3);
      const ok = s.state === 'idle' && s.participantId === null && s.tiles.length === 0;
      return ok ? { ok: true } : { ok: false, why: `P3 still ${s.state} with ${s.tiles.length} tiles` };
    });
  });

  await check('P1 and P2 show only each other within 10 s', async () => {
    const stayers = [p1, p2];
    await until(LEAVE_TIMEOUT_MS, async () => {
      const snaps = await Promise.all(stayers.map(snapshot));
      const wrong = [];
      snaps.forEach((s, i) => {
        const other = ids[stayers[1 - i].name];
        if (s.tiles.length !== 1 || s.tiles[0].id !== other) {
          wrong.push(`${stayers[i].name} has tiles ${JSON.stringify(s.tiles.map((t) => t.name))}`);
        }
      });
      return wrong.length ? { ok: false, why: wrong.join('; ') } : { ok: true };
    });
  });

  await check('P1 and P2 still decode video and receive audio from each other', async () => {
    const stayers = [p1, p2];
    const other = (peer) => [ids[stayers.find((p) => p !== peer).name]];
    return expectMedia(stayers, other, LEAVE_TIMEOUT_MS);
  });
}

async function waitJoined(group) {
  let snaps = [];
  await until(JOIN_TIMEOUT_MS, async () => {
    snaps = await Promise.all(group.map(snapshot));
    const waiting = snaps
      .map((s, i) => (s.state === 'joined' && s.participantId ? null : `${group[i].name} is ${s.state}${s.error ? ` (${s.error})` : ''}`))
      .filter(Boolean);
    return waiting.length ? { ok: false, why: waiting.join('; ') } : { ok: true };
  });
  return snaps;
}

// ---- main -------------------------------------------------------------------------------------

let shuttingDown = false;

async function shutdown() {
  shuttingDown = true;
  await closePeers();
  await stopServer();
}

function finish(code) {
  const skipped = Math.max(0, PLANNED_CHECKS - results.passed - results.failed);
  const tail = skipped ? `, ${skipped} skipped` : '';
  console.log(`e2e: ${results.passed} passed, ${results.failed} failed${tail}`);
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
