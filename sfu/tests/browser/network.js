#!/usr/bin/env node
// Network trouble end-to-end test with real browsers: a call between two Chromium pages, each in
// its own network namespace, survives what networks do to calls.
//
// Two servers (A and B) run behind a small TCP load balancer in this script that, like a
// Kubernetes Service or any load balancer with health checks, sends new connections to the first
// server whose /readyz answers 200. P1 and P2 join through it (so both land on A) and publish
// camera and microphone. Then, one after the other:
//  1. P1's WebSocket is cut by a firewall rule while its media still flows: P1 resumes its
//     session on a new socket; P2's video from P1 goes on without interruption.
//  2. P1's link goes down for 5 s: P2 sees P1 as reconnecting, never as gone; video resumes both
//     ways within 2 s of the link returning.
//  3. P1's address changes: ICE restarts on the same peer connection from the new address and
//     media resumes; P1 stays the same participant.
//  4. Server A gets SIGTERM: both pages move the call to B (fresh joins through the same URL)
//     before A's drain ends, and decode each other again; A exits.
// Reports the interruption each step caused.
//
// run-network.sh builds the network and runs this inside the server's namespace. Environment:
//   SFU_BIN                          the server binary
//   NET_CHROMIUM_P1, NET_CHROMIUM_P2 browser wrappers that run in each one's namespace
//   NET_NS_P1, NET_SRV_DEV1          P1's namespace; the server side of P1's link
//   NET_SRV_IP1, NET_SRV_IP2         the servers' addresses towards P1 and P2
//   NET_P1_IP, NET_P1_IP_NEW         P1's address, and the one it moves to (another subnet)
//   NET_SRV_IP1_NEW                  the server side's address in that subnet (P1's new gateway)
//   E2E_VERBOSE=1                    stream the servers' and the pages' logs
'use strict';

const { execFile } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const { chromium } = require('playwright-core');
const harness = require('./harness');

const env = process.env;
const config = {
  sfuBin: env.SFU_BIN,
  chromium: { P1: env.NET_CHROMIUM_P1, P2: env.NET_CHROMIUM_P2 },
  nsP1: env.NET_NS_P1,
  srvDev1: env.NET_SRV_DEV1 || 'v-p1',
  srvIp: { P1: env.NET_SRV_IP1 || '10.97.1.1', P2: env.NET_SRV_IP2 || '10.97.2.1' },
  p1Ip: env.NET_P1_IP || '10.97.1.2',
  p1IpNew: env.NET_P1_IP_NEW || '10.97.3.2',
  srvIp1New: env.NET_SRV_IP1_NEW || '10.97.3.1',
  lbPort: 18300,
  servers: {
    A: { http: 18301, udp: 40300 },
    B: { http: 18302, udp: 40310 },
  },
  verbose: env.E2E_VERBOSE === '1',
  room: 'network',
  apiKey: 'network-test',
  apiSecret: 'network-test-secret-0123456789abcdef0123',
  drainSeconds: 20,
};
const NAMES = ['P1', 'P2'];
const OTHER = { P1: 'P2', P2: 'P1' };

const HARD_TIMEOUT_MS = 240_000;
const HEALTH_TIMEOUT_MS = 20_000;
const JOIN_TIMEOUT_MS = 25_000;
const MEDIA_TIMEOUT_MS = 30_000;
/** How often the pages' decoded frames are sampled. */
const SAMPLE_MS = 200;
/**
 * A video gap longer than this counts as an interruption. Frames come every 33-66 ms; two
 * browsers, two servers and the driver share this machine's cores, which adds hiccups.
 */
const STALL_MS = 1000;
/** A cut WebSocket is noticed within 12 s (ping every 5 s); resuming takes a moment more. */
const WS_CUT_RESUME_MS = 25_000;
const LINK_DOWN_MS = 5_000;
/** After the link returns, video must be back within this long (both ways). */
const LINK_RESUME_MS = 2_000;
const ADDRESS_CHANGE_RESUME_MS = 15_000;
const MOVE_TIMEOUT_MS = 25_000;
const NFT_TABLE = 'sfu_net_ws_cut';

const { sleep, withTimeout, runScript, spawnLogged, stopGroup, httpGet } = harness;
const until = (timeoutMs, probe, intervalMs = 250) => harness.until(timeoutMs, probe, intervalMs);
class LogTail extends harness.LogTail {
  constructor(label, max) {
    super(label, config.verbose, max);
  }
}
const log = (...args) => console.log('network-e2e:', ...args);
const secs = (ms) => `${(ms / 1000).toFixed(2)} s`;

const CHROMIUM_ARGS = [
  ...harness.CHROMIUM_ARGS,
  // The pages come over http from 10.97.x.1: let them use getUserMedia like a secure origin.
  '--unsafely-treat-insecure-origin-as-secure=' + NAMES.map((n) => `http://${config.srvIp[n]}:${config.lbPort}`).join(','),
];

const results = { passed: 0, failed: 0 };
/** Per step, what it measured (for the summary). */
const measured = [];

const check = harness.checker(results, { onPass: (name, detail) => detail && measured.push(`${name}: ${detail}`) });

function run(cmd, args, { input, timeoutMs = 5000, extraEnv } = {}) {
  return new Promise((resolve, reject) => {
    const child = execFile(cmd, args, { timeout: timeoutMs, env: { ...env, ...extraEnv } }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args.join(' ')}: ${stderr.trim() || err.message}`));
      else resolve(stdout);
    });
    if (input !== undefined) child.stdin.end(input);
  });
}

// ---- servers and the load balancer ------------------------------------------------------------

const servers = {};
const serverLogs = { A: new LogTail('sfu-A', 200), B: new LogTail('sfu-B', 200) };
const keysEnv = { SFU_API_KEY: config.apiKey, SFU_API_SECRET: config.apiSecret };

function startServer(name) {
  const s = config.servers[name];
  const args = [
    '--http', `127.0.0.1:${s.http}`,
    '--udp-port', String(s.udp),
    '--workers', '1',
    '--shutdown-drain-timeout', `${config.drainSeconds}s`,
    ...NAMES.flatMap((n) => ['--advertise-ip', config.srvIp[n]]),
  ];
  log(`starting server ${name}: ${config.sfuBin} ${args.join(' ')}`);
  const child = spawnLogged(config.sfuBin, args, { ...env, ...keysEnv, RUST_LOG: env.RUST_LOG || 'info', NO_COLOR: '1' }, serverLogs[name]);
  child.exited.then((e) => {
    if (!shuttingDown) serverLogs[name].push(`server ${name} exited (code ${e.code}, signal ${e.signal})`);
  });
  servers[name] = child;
  return child;
}

/** Backend name -> whether its /readyz answered 200 at the last look. */
const ready = { A: false, B: false };
let healthTimer = null;
const lbSockets = new Set();
let lb = null;
/** Connections the load balancer sent to each server. */
const routed = { A: 0, B: 0 };

async function pollHealth() {
  await Promise.all(
    Object.keys(ready).map(async (name) => {
      const res = await httpGet(`http://127.0.0.1:${config.servers[name].http}/readyz`, 500);
      ready[name] = res.status === 200;
    }),
  );
}

/** New connections go to the first ready server, A before B; none ready: refused. */
function startBalancer() {
  const loop = async () => {
    await pollHealth().catch(() => {});
    if (!shuttingDown) healthTimer = setTimeout(loop, 200);
  };
  loop();
  lb = net.createServer((client) => {
    const name = ['A', 'B'].find((n) => ready[n]);
    if (!name) {
      client.destroy();
      return;
    }
    routed[name]++;
    const upstream = net.connect(config.servers[name].http, '127.0.0.1');
    for (const s of [client, upstream]) {
      lbSockets.add(s);
      s.on('close', () => lbSockets.delete(s));
      s.on('error', () => {
        client.destroy();
        upstream.destroy();
      });
    }
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
    client.pipe(upstream);
    upstream.pipe(client);
  });
  return new Promise((resolve, reject) => {
    lb.once('error', reject);
    lb.listen(config.lbPort, '0.0.0.0', resolve);
  });
}

async function mintToken(identity, name) {
  const out = await run(config.sfuBin, ['token', '--room', config.room, '--identity', identity, '--name', name, '--ttl', '1h'], {
    extraEnv: keysEnv,
  });
  return out.trim().split('\n').pop().trim();
}

// ---- the browsers -----------------------------------------------------------------------------

const peers = {};

async function launchPeer(name) {
  const browser = await chromium.launch({ executablePath: config.chromium[name], headless: true, args: CHROMIUM_ARGS });
  const context = await browser.newContext({ viewport: { width: 960, height: 720 } });
  await context.addInitScript(watchIceInPage);
  const page = await context.newPage();
  const peer = { name, browser, page, log: new LogTail(name, 150), samples: [] };
  page.on('console', (m) => peer.log.push(`console.${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => peer.log.push(`pageerror: ${e.message}`));
  page.on('crash', () => peer.log.push('page crashed'));
  peers[name] = peer;
  return peer;
}

async function openAndJoin(peer) {
  const token = await mintToken(peer.name.toLowerCase(), peer.name);
  const q = new URLSearchParams({ room: config.room, name: peer.name, token, autojoin: '1' });
  await peer.page.goto(`http://${config.srvIp[peer.name]}:${config.lbPort}/?${q}`, {
    timeout: JOIN_TIMEOUT_MS,
    waitUntil: 'domcontentloaded',
  });
  await until(JOIN_TIMEOUT_MS, async () => {
    const s = await peer.page.evaluate(() => ({ state: window.sfuDemo.client.state, id: window.sfuDemo.client.participantId }));
    return s.state === 'joined' && s.id ? { ok: true } : { ok: false, why: `${peer.name} is ${s.state}` };
  });
  // Records the client's events in the page, with wall-clock times.
  await peer.page.evaluate(() => {
    const { client } = window.sfuDemo;
    const events = [];
    window.networkTestEvents = events;
    const snapshot = () =>
      [...client.participants].map(([id, p]) => ({ id, name: p.name, reconnecting: p.reconnecting === true, quality: p.quality ?? null }));
    client.addEventListener('participants-changed', () => events.push({ at: Date.now(), type: 'participants', participants: snapshot() }));
    for (const type of ['connection-quality', 'stream-state', 'reconnecting', 'reconnected', 'shutting-down', 'left']) {
      client.addEventListener(type, (ev) => events.push({ at: Date.now(), type, detail: ev.detail }));
    }
  });
}

/** Before the page's scripts: logs (for the failure report) every ICE state change, timestamped. */
function watchIceInPage() {
  const Native = window.RTCPeerConnection;
  window.RTCPeerConnection = class extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener('iceconnectionstatechange', () => console.log(`${Date.now()} ice ${this.iceConnectionState}`));
      this.addEventListener('connectionstatechange', () => console.log(`${Date.now()} connection ${this.connectionState}`));
    }
  };
}

/** In a page: per remote participant name, the video track it decodes and its frame count. */
async function framesInPage() {
  const { client } = window.sfuDemo;
  const pc = client.pc;
  const out = { at: Date.now(), id: client.participantId, state: client.state, remotes: {}, pair: null };
  if (!pc) return out;
  const stats = await pc.getStats();
  const byTrack = new Map();
  stats.forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'video') byTrack.set(s.trackIdentifier, s);
  });
  for (const p of client.participants.values()) {
    for (const track of p.stream.getVideoTracks()) {
      const s = byTrack.get(track.id);
      if (s && (s.framesDecoded ?? 0) > (out.remotes[p.name]?.frames ?? -1)) {
        out.remotes[p.name] = { track: track.id, frames: s.framesDecoded ?? 0 };
      }
    }
  }
  stats.forEach((s) => {
    if (s.type === 'transport' && s.selectedCandidatePairId && !out.pair) {
      const pair = stats.get(s.selectedCandidatePairId);
      const local = pair && stats.get(pair.localCandidateId);
      out.pair = local ? { local: local.address, state: pair.state } : null;
    }
  });
  return out;
}

const readFrames = (peer) => withTimeout(peer.page.evaluate(framesInPage), 5000, `${peer.name} stats`);
const pageEvents = (peer) => withTimeout(peer.page.evaluate(() => window.networkTestEvents ?? []), 5000, `${peer.name} events`);

/**
 * Samples every page's decoded frames in the background: `peer.progress[other]` is the list of
 * times at which new frames from `other` had been decoded.
 */
let sampling = false;
async function sampleLoop() {
  sampling = true;
  for (const p of Object.values(peers)) p.progress = { P1: [], P2: [] };
  const last = {};
  while (sampling) {
    await Promise.all(
      Object.values(peers).map(async (peer) => {
        const f = await readFrames(peer).catch(() => null);
        if (!f) return;
        peer.latest = f;
        const other = OTHER[peer.name];
        const r = f.remotes[other];
        const key = `${peer.name}<-${other}`;
        const before = last[key];
        if (r && r.frames > 0 && (!before || before.track !== r.track || r.frames > before.frames)) {
          peer.progress[other].push(f.at);
        }
        if (r) last[key] = r;
      }),
    );
    await sleep(SAMPLE_MS);
  }
}

/** The longest time without new frames in `times` between `from` and `to`. */
function longestGap(times, from, to) {
  let prev = from;
  let gap = 0;
  for (const t of times) {
    if (t < from) continue;
    if (t > to) break;
    gap = Math.max(gap, t - prev);
    prev = t;
  }
  return Math.max(gap, to - prev);
}

/** The first time after `from` at which new frames had come, or null. */
const firstAfter = (times, from) => times.find((t) => t > from) ?? null;

/** The times at which `who` saw the participant named `name` gone from its list since `from`. */
async function leavesSeen(who, name, from) {
  const events = await pageEvents(who);
  const gone = [];
  let present = true;
  for (const ev of events) {
    if (ev.type !== 'participants' || ev.at < from) continue;
    const here = ev.participants.some((p) => p.name === name);
    if (present && !here) gone.push(ev.at);
    present = here;
  }
  return gone;
}

/** Whether `who` saw `name` as reconnecting (signalling dropped or quality `lost`) since `from`. */
async function reconnectingSeen(who, name, from) {
  const events = await pageEvents(who);
  return events.some(
    (ev) =>
      ev.at >= from &&
      ((ev.type === 'participants' && ev.participants.some((p) => p.name === name && (p.reconnecting || p.quality === 'lost'))) ||
        (ev.type === 'connection-quality' && !ev.detail.local && ev.detail.quality === 'lost')),
  );
}

async function eventsOf(peer, type, from) {
  return (await pageEvents(peer)).filter((ev) => ev.type === type && ev.at >= from);
}

/** Waits until both pages decode new frames from each other after `from`. */
async function bothDecodeAfter(from, timeoutMs) {
  await until(timeoutMs, async () => {
    const missing = NAMES.filter((n) => firstAfter(peers[n].progress[OTHER[n]], from) === null);
    return missing.length ? { ok: false, why: `no new frames at ${missing.join(', ')}` } : { ok: true };
  });
  return Object.fromEntries(NAMES.map((n) => [n, firstAfter(peers[n].progress[OTHER[n]], from) - from]));
}

async function clientState(peer) {
  return peer.page.evaluate(() => ({ id: window.sfuDemo.client.participantId, state: window.sfuDemo.client.state }));
}

// ---- the scenario -----------------------------------------------------------------------------

async function scenario() {
  if (!config.sfuBin || !fs.existsSync(config.sfuBin)) throw new Error(`SFU_BIN=${config.sfuBin} does not exist`);
  for (const name of NAMES) {
    const p = config.chromium[name];
    if (!p || !fs.existsSync(p)) throw new Error(`NET_CHROMIUM_${name}=${p} does not exist (run this through run-network.sh)`);
  }
  if (!config.nsP1) throw new Error('NET_NS_P1 must be set (run this through run-network.sh)');

  startServer('A');
  startServer('B');
  await check('both servers are ready and the load balancer listens', async () => {
    await startBalancer();
    await until(HEALTH_TIMEOUT_MS, async () => {
      for (const n of ['A', 'B']) {
        if (servers[n].exitCode !== null) return { ok: false, stop: true, why: `server ${n} exited early` };
      }
      return ready.A && ready.B ? { ok: true } : { ok: false, why: `ready: ${JSON.stringify(ready)}` };
    }, 200);
  });

  await Promise.all(NAMES.map((n) => launchPeer(n)));
  const { P1: p1, P2: p2 } = peers;

  await check('P1 and P2 join on server A and decode each other', async () => {
    await Promise.all([openAndJoin(p1), openAndJoin(p2)]);
    sampleLoop();
    const t0 = Date.now();
    await until(MEDIA_TIMEOUT_MS, async () => {
      const missing = NAMES.filter((n) => peers[n].progress[OTHER[n]].length < 3);
      return missing.length ? { ok: false, why: `no video yet at ${missing.join(', ')}` } : { ok: true };
    });
    if (routed.B > 0) throw new Error(`the balancer sent ${routed.B} connection(s) to B while A was ready`);
    return `video both ways ${secs(Date.now() - t0)} after joining`;
  });
  const p1Id = (await clientState(p1)).id;

  // 1. The WebSocket is cut; the media path is not.
  await check("P1's WebSocket cut by a firewall rule: resumed on a new socket, media uninterrupted", async () => {
    const listing = await run('ip', ['netns', 'exec', config.nsP1, 'ss', '-Htn', 'state', 'established', 'dst', `${config.srvIp.P1}:${config.lbPort}`]);
    const ports = [...listing.matchAll(/\S+:(\d+)\s+\S+:\d+\s*$/gm)].map((m) => Number(m[1]));
    if (ports.length === 0) throw new Error(`no TCP connection from P1 to the server: ${listing}`);
    const set = ports.join(', ');
    const rules =
      `table inet ${NFT_TABLE} {\n` +
      `  chain out { type filter hook output priority 0; policy accept; tcp sport { ${set} } drop; }\n` +
      `  chain in { type filter hook input priority 0; policy accept; tcp dport { ${set} } drop; }\n}\n`;
    const cutAt = Date.now();
    await run('ip', ['netns', 'exec', config.nsP1, 'nft', '-f', '-'], { input: rules });
    let resumedAt = null;
    await until(WS_CUT_RESUME_MS, async () => {
      const back = await eventsOf(p1, 'reconnected', cutAt);
      if (back.length) {
        resumedAt = back[0].at;
        return { ok: true };
      }
      return { ok: false, why: `P1 has not reconnected (reconnecting events: ${(await eventsOf(p1, 'reconnecting', cutAt)).length})` };
    });
    await run('ip', ['netns', 'exec', config.nsP1, 'nft', 'delete', 'table', 'inet', NFT_TABLE]);
    await sleep(1000);
    const back = (await eventsOf(p1, 'reconnected', cutAt))[0];
    if (back.detail.rejoined) throw new Error('P1 joined afresh instead of resuming');
    const state = await clientState(p1);
    if (state.id !== p1Id) throw new Error(`P1's participant id changed: ${p1Id} -> ${state.id}`);
    const gone = await leavesSeen(p2, 'P1', cutAt);
    if (gone.length) throw new Error('P2 saw P1 leave');
    const now = Date.now();
    const gaps = NAMES.map((n) => longestGap(peers[n].progress[OTHER[n]], cutAt, now));
    if (Math.max(...gaps) > STALL_MS) throw new Error(`video stalled: longest gap P1 ${gaps[0]} ms, P2 ${gaps[1]} ms`);
    return `resumed ${secs(resumedAt - cutAt)} after the cut (ports ${set}); longest video gap P1 ${gaps[0]} ms, P2 ${gaps[1]} ms`;
  });

  // 2. The link goes down for 5 s.
  await check("P1's link down for 5 s: P2 sees it reconnecting, not leaving; video back within 2 s", async () => {
    const downAt = Date.now();
    await run('ip', ['link', 'set', config.srvDev1, 'down']);
    await sleep(LINK_DOWN_MS);
    await run('ip', ['link', 'set', config.srvDev1, 'up']);
    const upAt = Date.now();
    const back = await bothDecodeAfter(upAt, 15_000);
    await sleep(1000);
    const gone = await leavesSeen(p2, 'P1', downAt);
    if (gone.length) throw new Error('P2 saw P1 leave');
    if (!(await reconnectingSeen(p2, 'P1', downAt))) throw new Error('P2 never saw P1 as reconnecting');
    const state = await clientState(p1);
    if (state.state !== 'joined' || state.id !== p1Id) throw new Error(`P1 is ${state.state} as ${state.id} (was ${p1Id})`);
    const detail = `video back ${back.P2} ms (P2 from P1) and ${back.P1} ms (P1 from P2) after the link returned`;
    if (Math.max(back.P1, back.P2) > LINK_RESUME_MS) throw new Error(detail);
    return detail;
  });
  await settle(p1);

  // 3. The address changes.
  await check("P1's address changes: ICE restarts from the new address, same participant, media back", async () => {
    const movedAt = Date.now();
    log(`moving P1 at ${movedAt}`);
    // Like Wi-Fi to mobile: a new address in another network, the old one gone.
    await run('ip', ['-n', config.nsP1, 'addr', 'add', `${config.p1IpNew}/24`, 'dev', 'eth0']);
    await run('ip', ['-n', config.nsP1, 'addr', 'del', `${config.p1Ip}/24`, 'dev', 'eth0']);
    await run('ip', ['-n', config.nsP1, 'route', 'add', 'default', 'via', config.srvIp1New]);
    const back = await bothDecodeAfter(movedAt + 500, ADDRESS_CHANGE_RESUME_MS);
    await until(10_000, async () => {
      const f = await readFrames(p1);
      return f.pair?.local === config.p1IpNew ? { ok: true } : { ok: false, why: `P1's selected pair is local ${f.pair?.local}` };
    });
    const gone = await leavesSeen(p2, 'P1', movedAt);
    if (gone.length) throw new Error('P2 saw P1 leave');
    const state = await clientState(p1);
    if (state.id !== p1Id) throw new Error(`P1's participant id changed: ${p1Id} -> ${state.id}`);
    const now = Date.now();
    const gaps = NAMES.map((n) => longestGap(peers[n].progress[OTHER[n]], movedAt, now));
    return `media from ${config.p1IpNew}; video back ${back.P2} ms (P2 from P1), ${back.P1} ms (P1 from P2); longest gap P1 ${gaps[0]} ms, P2 ${gaps[1]} ms`;
  });
  await settle(p1);

  // 4. Server A shuts down; the call moves to B.
  await check('server A gets SIGTERM: both pages move the call to server B', async () => {
    const ids = { P1: (await clientState(p1)).id, P2: (await clientState(p2)).id };
    const termAt = Date.now();
    process.kill(servers.A.pid, 'SIGTERM');
    await until(MOVE_TIMEOUT_MS, async () => {
      const moved = [];
      for (const n of NAMES) {
        const ev = (await eventsOf(peers[n], 'reconnected', termAt)).find((e) => e.detail.rejoined);
        if (ev) moved.push(n);
      }
      return moved.length === 2 ? { ok: true } : { ok: false, why: `moved: ${moved.join(', ') || 'nobody'}` };
    });
    const back = await bothDecodeAfter(termAt, MOVE_TIMEOUT_MS);
    for (const n of NAMES) {
      const s = await clientState(peers[n]);
      if (s.state !== 'joined' || s.id === ids[n]) throw new Error(`${n} is ${s.state} as ${s.id} (was ${ids[n]} on A)`);
      if (!(await eventsOf(peers[n], 'shutting-down', termAt)).length) throw new Error(`${n} was not told that A shuts down`);
      if ((await eventsOf(peers[n], 'left', termAt)).length) throw new Error(`${n}'s session ended`);
    }
    if (routed.B < 2) throw new Error(`the balancer sent only ${routed.B} connection(s) to B`);
    const exit = await withTimeout(servers.A.exited, 15_000, 'server A exiting');
    const exitedAt = Date.now();
    const rooms = await httpGet(`http://127.0.0.1:${config.servers.B.http}/healthz`, 1000);
    if (rooms.status !== 200) throw new Error(`server B's /healthz: ${rooms.status}`);
    const now = Date.now();
    const gaps = NAMES.map((n) => longestGap(peers[n].progress[OTHER[n]], termAt, now));
    return (
      `video on B ${back.P2} ms (P2 from P1), ${back.P1} ms (P1 from P2) after SIGTERM; longest gap P1 ${gaps[0]} ms, ` +
      `P2 ${gaps[1]} ms; A exited (code ${exit.code}) ${secs(exitedAt - termAt)} after SIGTERM`
    );
  });
}

/** Waits until `peer` is joined and not reconnecting, with media both ways, before the next step. */
async function settle(peer) {
  const from = Date.now();
  await until(20_000, async () => {
    const reconnecting = await peer.page.evaluate(() => document.querySelector('#status')?.dataset.state ?? '');
    if (reconnecting === 'reconnecting') return { ok: false, why: `${peer.name} is reconnecting` };
    return { ok: true };
  });
  await bothDecodeAfter(from, 20_000);
  await sleep(1000);
}

// ---- main -------------------------------------------------------------------------------------

let shuttingDown = false;

async function shutdown() {
  shuttingDown = true;
  sampling = false;
  clearTimeout(healthTimer);
  await Promise.all(
    Object.values(peers).map((peer) => withTimeout(peer.browser.close(), 5000, `closing ${peer.name}`).catch(() => {})),
  );
  for (const s of lbSockets) s.destroy();
  lb?.close();
  await Promise.all(Object.values(servers).map((s) => stopGroup(s)));
  await run('ip', ['netns', 'exec', config.nsP1, 'nft', 'delete', 'table', 'inet', NFT_TABLE]).catch(() => {});
}

function finish(code) {
  for (const line of measured) log(line);
  console.log(`network-e2e: ${results.passed} passed, ${results.failed} failed`);
  process.exit(code);
}

process.on('exit', () => {
  const b = servers.B;
  if (b && b.exitCode === null && b.signalCode === null) harness.killGroup(b, 'SIGKILL');
});

runScript({
  scenario,
  shutdown,
  finish,
  results,
  log,
  hardTimeoutMs: HARD_TIMEOUT_MS,
  server: () => servers.A,
  onFailure: async (quick) => {
    serverLogs.A.dump();
    serverLogs.B.dump();
    for (const peer of Object.values(peers)) peer.log.dump();
    if (!quick) {
      for (const peer of Object.values(peers)) {
        const events = await pageEvents(peer).catch(() => []);
        for (const ev of events.slice(-40)) console.log(`[${peer.name} event] ${JSON.stringify(ev)}`);
        console.log(`[${peer.name}] latest ${JSON.stringify(peer.latest ?? null)}`);
      }
    }
  },
});
