#!/usr/bin/env node
// TURN and ICE-TCP end-to-end test with real browsers, each in its own network namespace.
//
//  P1  plain Chromium (UDP to the server's host candidates).
//  P2  Chromium with `iceTransportPolicy: 'relay'` (demo URL parameter relay=1): it may only use
//      the coturn relay whose URL and time-limited credentials the server hands out in `joined`.
//  P3  Chromium in a namespace whose firewall drops every UDP packet: it has to use the server's
//      passive ICE-TCP candidate.
//
// All three publish camera and microphone and join at the same time. Checks: each decodes video
// from both others; P2's selected candidate pair has a local candidate of type `relay` and coturn
// logged P2's allocation; P3's selected pair runs over TCP and its firewall did drop UDP. Reports
// the time from opening the page to the first decoded frame of each other participant, and the
// candidates of every selected pair.
//
// run-firewall.sh builds the network, starts coturn, and runs this inside the server's namespace.
// Environment (set by run-firewall.sh):
//   SFU_BIN                                  the server binary
//   FW_CHROMIUM_P1, _P2, _P3                 browser wrappers that run in each one's namespace
//   FW_NS_P3, FW_NFT_TABLE                   P3's namespace and its nftables table (for counters)
//   FW_SRV_IP1 .. FW_SRV_IP4                 the server's addresses towards P1, P2, P3, coturn
//   FW_TURN_IP, FW_TURN_PORT, FW_TURN_SECRET coturn's address, port and shared secret
//   FW_TURN_LOG, FW_TURN_OUT                 coturn's log file; its stdout and stderr (the log
//                                            lines plus errors of its sockets)
//   FW_HTTP_PORT, FW_UDP_PORT                server ports (default 18100, 40200)
//   E2E_VERBOSE=1                            stream the server's and the pages' logs
'use strict';

const { execFile } = require('node:child_process');
const fs = require('node:fs');
const { chromium } = require('playwright-core');

const env = process.env;
const config = {
  sfuBin: env.SFU_BIN,
  chromium: { P1: env.FW_CHROMIUM_P1, P2: env.FW_CHROMIUM_P2, P3: env.FW_CHROMIUM_P3 },
  nsP3: env.FW_NS_P3,
  nftTable: env.FW_NFT_TABLE || 'sfu_fw_no_udp',
  srvIp: { P1: env.FW_SRV_IP1 || '10.98.1.1', P2: env.FW_SRV_IP2 || '10.98.2.1', P3: env.FW_SRV_IP3 || '10.98.3.1' },
  srvIpTurn: env.FW_SRV_IP4 || '10.98.4.1',
  p2Ip: env.FW_P2_IP || '10.98.2.2',
  turnIp: env.FW_TURN_IP || '10.98.4.2',
  turnPort: Number(env.FW_TURN_PORT) || 3478,
  turnSecret: env.FW_TURN_SECRET,
  turnLog: env.FW_TURN_LOG,
  turnOut: env.FW_TURN_OUT,
  httpPort: Number(env.FW_HTTP_PORT) || 18100,
  udpPort: Number(env.FW_UDP_PORT) || 40200,
  verbose: env.E2E_VERBOSE === '1',
  room: 'firewall',
};
const NAMES = ['P1', 'P2', 'P3'];

const HARD_TIMEOUT_MS = 150_000;
const HEALTH_TIMEOUT_MS = 20_000;
const JOIN_TIMEOUT_MS = 25_000;
/** Pages opened until every page decodes video from both others. */
const MEDIA_TIMEOUT_MS = 45_000;
/** After the first decoded frames: frames must keep coming over this gap. */
const SAMPLE_GAP_MS = 2_000;
const POLL_MS = 250;

const harness = require('./harness');

const CHROMIUM_ARGS = [
  ...harness.CHROMIUM_ARGS,
  // The pages come from 10.98.x.1 over http: let them use getUserMedia like a secure origin.
  '--unsafely-treat-insecure-origin-as-secure=' +
    NAMES.map((n) => `http://${config.srvIp[n]}:${config.httpPort}`).join(','),
];

const {
  sleep,
  withTimeout,
  runScript,
  spawnLogged,
  stopGroup,
  httpGet,
} = harness;
const until = (timeoutMs, probe, intervalMs = POLL_MS) => harness.until(timeoutMs, probe, intervalMs);
/** The last lines of a child's or a page's output, printed on failure. */
class LogTail extends harness.LogTail {
  constructor(label) {
    super(label, config.verbose);
  }
}
const log = (...args) => console.log('firewall-e2e:', ...args);
const secs = (ms) => `${(ms / 1000).toFixed(1)} s`;

// ---- bookkeeping ------------------------------------------------------------------------------

const results = { passed: 0, failed: 0 };
/** For the summary: per participant, ms to the first frame from each other one; selected pairs. */
const firstFrameMs = Object.fromEntries(NAMES.map((n) => [n, {}]));
const selectedPairs = {};
/** The TURN username the server gave P2. */
let p2TurnUser = null;


const check = harness.checker(results);

function run(cmd, args, timeoutMs = 5000) {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: timeoutMs }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args.join(' ')}: ${stderr.trim() || err.message}`));
      else resolve(stdout);
    });
  });
}

// ---- the server -------------------------------------------------------------------------------

let server = null;
const serverLog = new LogTail('sfu', 200);

function startServer() {
  const advertised = [...NAMES.map((n) => config.srvIp[n]), config.srvIpTurn];
  const args = [
    '--http', `0.0.0.0:${config.httpPort}`,
    // Development mode on the namespaces' addresses: the browsers reach it from outside loopback.
    '--dev',
    '--udp-port', String(config.udpPort),
    '--workers', '2',
    '--ice-tcp', 'true',
    '--stun-url', `stun:${config.turnIp}:${config.turnPort}`,
    '--turn-url', `turn:${config.turnIp}:${config.turnPort}?transport=udp`,
    ...advertised.flatMap((ip) => ['--advertise-ip', ip]),
  ];
  log(`starting ${config.sfuBin} ${args.join(' ')} (SFU_TURN_SECRET in the environment)`);
  const childEnv = {
    ...env,
    SFU_TURN_SECRET: config.turnSecret,
    RUST_LOG: env.RUST_LOG || 'info',
    NO_COLOR: '1',
  };
  return spawnLogged(config.sfuBin, args, childEnv, serverLog);
}

async function stopServer() {
  await stopGroup(server);
}

// ---- the browsers -----------------------------------------------------------------------------

const peers = [];

async function launchPeer(name) {
  const browser = await chromium.launch({ executablePath: config.chromium[name], headless: true, args: CHROMIUM_ARGS });
  const context = await browser.newContext({ viewport: { width: 960, height: 720 } });
  await context.addInitScript(watchIceInPage);
  const page = await context.newPage();
  const peer = { name, browser, page, log: new LogTail(name, 100), openedAt: null };
  page.on('console', (m) => peer.log.push(`console.${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => peer.log.push(`pageerror: ${e.message}`));
  page.on('crash', () => peer.log.push('page crashed'));
  peers.push(peer);
  return peer;
}

/**
 * Before the page's scripts: logs to the console (kept for the failure report) the ICE events of
 * every peer connection: gathered candidates, candidate errors (TURN errors show here), state changes.
 */
function watchIceInPage() {
  const Native = window.RTCPeerConnection;
  window.RTCPeerConnection = class extends Native {
    constructor(...args) {
      super(...args);
      const t0 = performance.now();
      const at = () => `+${Math.round(performance.now() - t0)}ms`;
      this.addEventListener('icecandidate', (ev) => {
        console.log(`ice ${at()} local candidate: ${ev.candidate ? ev.candidate.candidate : 'end of gathering'}`);
      });
      this.addEventListener('icecandidateerror', (ev) => {
        console.log(`ice ${at()} candidate error: ${ev.url} ${ev.errorCode} ${ev.errorText} (${ev.address}:${ev.port})`);
      });
      this.addEventListener('iceconnectionstatechange', () => console.log(`ice ${at()} ice state ${this.iceConnectionState}`));
      this.addEventListener('connectionstatechange', () => console.log(`ice ${at()} connection state ${this.connectionState}`));
    }
  };
}

async function openAndJoin(peer, extra) {
  const q = new URLSearchParams({ room: config.room, name: peer.name, autojoin: '1', ...extra });
  peer.openedAt = Date.now();
  await peer.page.goto(`http://${config.srvIp[peer.name]}:${config.httpPort}/?${q}`, {
    timeout: JOIN_TIMEOUT_MS,
    waitUntil: 'domcontentloaded',
  });
  await until(JOIN_TIMEOUT_MS, async () => {
    const s = await peer.page.evaluate(() => {
      const { client } = window.sfuDemo;
      const banner = document.querySelector('#error');
      return {
        state: client.state,
        id: client.participantId,
        error: banner && !banner.hidden ? banner.textContent.trim() : null,
      };
    });
    if (s.state === 'joined' && s.id) return { ok: true };
    return { ok: false, why: `${peer.name} is ${s.state}${s.error ? ` (${s.error})` : ''}` };
  });
  peer.joinedAt = Date.now();
}

/**
 * In a page: per remote participant (by name) the inbound video it decodes; the selected candidate
 * pair with both candidates; the ICE servers and transport policy the peer connection uses.
 */
async function mediaInPage() {
  const { client } = window.sfuDemo;
  const pc = client.pc;
  if (!pc) return { pc: 'none', remotes: {}, pair: null };
  const stats = await pc.getStats();
  const videoByTrack = new Map();
  stats.forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'video') videoByTrack.set(s.trackIdentifier, s);
  });
  const remotes = {};
  for (const [id, p] of client.participants) {
    let best = null;
    for (const track of p.stream.getVideoTracks()) {
      const s = videoByTrack.get(track.id);
      if (s && (!best || (s.framesDecoded ?? 0) > (best.framesDecoded ?? 0))) best = s;
    }
    remotes[p.name || id] = best
      ? { framesDecoded: best.framesDecoded ?? 0, frameWidth: best.frameWidth ?? 0, frameHeight: best.frameHeight ?? 0 }
      : null;
  }
  let pair = null;
  stats.forEach((s) => {
    if (s.type === 'transport' && s.selectedCandidatePairId && !pair) pair = stats.get(s.selectedCandidatePairId) ?? null;
  });
  if (!pair) {
    stats.forEach((s) => {
      if (s.type === 'candidate-pair' && s.state === 'succeeded' && s.nominated && !pair) pair = s;
    });
  }
  const candidate = (id) => {
    const c = id ? stats.get(id) : null;
    return c
      ? {
          type: c.candidateType,
          protocol: c.protocol,
          address: c.address,
          port: c.port,
          relayProtocol: c.relayProtocol ?? null,
          tcpType: c.tcpType ?? null,
          url: c.url ?? null,
        }
      : null;
  };
  const pairs = [];
  stats.forEach((s) => {
    if (s.type !== 'candidate-pair') return;
    const l = candidate(s.localCandidateId);
    const r = candidate(s.remoteCandidateId);
    pairs.push(
      `${l?.type}/${l?.protocol} ${l?.address}:${l?.port} -> ${r?.type}/${r?.protocol} ${r?.address}:${r?.port} ` +
        `${s.state}${s.nominated ? ' nominated' : ''} req ${s.requestsSent ?? 0} resp ${s.responsesReceived ?? 0}`,
    );
  });
  const cfg = pc.getConfiguration();
  return {
    pc: `${pc.connectionState}/${pc.iceConnectionState}`,
    policy: cfg.iceTransportPolicy,
    iceServers: (cfg.iceServers ?? []).map((s) => `${[].concat(s.urls).join(',')}${s.username ? ` (user ${s.username})` : ''}`),
    remotes,
    pair: pair
      ? {
          state: pair.state,
          nominated: pair.nominated ?? false,
          bytesSent: pair.bytesSent ?? 0,
          bytesReceived: pair.bytesReceived ?? 0,
          local: candidate(pair.localCandidateId),
          remote: candidate(pair.remoteCandidateId),
        }
      : null,
    pairs,
  };
}

const readMedia = (peer) => withTimeout(peer.page.evaluate(mediaInPage), 5000, `${peer.name} stats`);

const describeCandidate = (c) =>
  c
    ? `${c.type}/${c.protocol}${c.relayProtocol ? ` (relay over ${c.relayProtocol})` : ''}` +
      `${c.tcpType ? ` tcptype ${c.tcpType}` : ''} ${c.address}:${c.port}`
    : 'none';
const describePair = (p) =>
  p ? `local ${describeCandidate(p.local)} -> remote ${describeCandidate(p.remote)} (${p.state}${p.nominated ? ', nominated' : ''})` : 'no selected pair';

/** Packets dropped so far by P3's firewall: { in, out }. */
async function p3Drops() {
  const listing = await run('ip', ['netns', 'exec', config.nsP3, 'nft', 'list', 'table', 'inet', config.nftTable]);
  const counts = [...listing.matchAll(/counter packets (\d+)/g)].map((m) => Number(m[1]));
  return { in: counts[0] ?? 0, out: counts[1] ?? 0 };
}

function readTurnLog() {
  try {
    return fs.readFileSync(config.turnLog, 'utf8');
  } catch {
    return '';
  }
}

// ---- the scenario -----------------------------------------------------------------------------

async function scenario() {
  if (!config.sfuBin || !fs.existsSync(config.sfuBin)) throw new Error(`SFU_BIN=${config.sfuBin} does not exist`);
  for (const name of NAMES) {
    const p = config.chromium[name];
    if (!p || !fs.existsSync(p)) throw new Error(`FW_CHROMIUM_${name}=${p} does not exist (run this through run-firewall.sh)`);
  }
  if (!config.nsP3 || !config.turnSecret || !config.turnLog) {
    throw new Error('FW_NS_P3, FW_TURN_SECRET and FW_TURN_LOG must be set (run this through run-firewall.sh)');
  }

  server = startServer();
  await check('server answers /healthz', async () => {
    let exit = null;
    server.exited.then((e) => (exit = e));
    await until(HEALTH_TIMEOUT_MS, async () => {
      if (exit) return { ok: false, stop: true, why: `server exited early (code ${exit.code}, signal ${exit.signal})` };
      const res = await httpGet(`http://${config.srvIp.P1}:${config.httpPort}/healthz`, 1000);
      return res.status === 200 ? { ok: true } : { ok: false, why: `GET /healthz: ${res.status ?? 'no connection'}` };
    }, 200);
    server.exited.then((e) => {
      if (!shuttingDown) serverLog.push(`server exited during the test (code ${e.code}, signal ${e.signal})`);
    });
  });

  const [p1, p2, p3] = await Promise.all(NAMES.map((n) => launchPeer(n)));

  await check('P1 (plain), P2 (relay only) and P3 (no UDP) join at the same time', async () => {
    await Promise.all([openAndJoin(p1, {}), openAndJoin(p2, { relay: '1' }), openAndJoin(p3, {})]);
    const m2 = await readMedia(p2);
    if (m2.policy !== 'relay') throw new Error(`P2's peer connection has iceTransportPolicy '${m2.policy}'`);
    const turn = m2.iceServers.find((s) => s.startsWith('turn:'));
    const user = turn ? /\(user (\d+:[^)]*)\)/.exec(turn)?.[1] : null;
    if (!user) throw new Error(`P2's ICE servers lack TURN credentials: ${m2.iceServers.join('; ')}`);
    p2TurnUser = user;
    return `join took ${NAMES.map((n, i) => `${n} ${secs([p1, p2, p3][i].joinedAt - [p1, p2, p3][i].openedAt)}`).join(', ')}; ` +
      `P2 policy relay, ICE servers ${m2.iceServers.join('; ')}`;
  });

  await check('every participant decodes video from both others', async () => {
    const all = [p1, p2, p3];
    const first = new Map();
    let decodedAll = null;
    let last = {};
    await until(MEDIA_TIMEOUT_MS, async () => {
      const seen = await Promise.all(all.map((peer) => readMedia(peer)));
      const missing = [];
      all.forEach((peer, i) => {
        last[peer.name] = seen[i];
        for (const other of NAMES.filter((n) => n !== peer.name)) {
          const v = seen[i].remotes[other];
          if (v && v.framesDecoded > 0 && v.frameWidth > 0) {
            const key = `${peer.name}<-${other}`;
            if (!first.has(key)) {
              first.set(key, v.framesDecoded);
              firstFrameMs[peer.name][other] = Date.now() - peer.openedAt;
            }
          } else {
            missing.push(`${peer.name} <- ${other}: ${v ? `${v.framesDecoded} frames, ${v.frameWidth} wide` : 'no video'} (pc ${seen[i].pc})`);
          }
        }
      });
      if (missing.length) return { ok: false, why: missing.join('; ') };
      decodedAll = seen;
      return { ok: true };
    });
    // Frames keep coming.
    await sleep(SAMPLE_GAP_MS);
    const later = await Promise.all(all.map((peer) => readMedia(peer)));
    const stuck = [];
    const sizes = [];
    all.forEach((peer, i) => {
      for (const other of NAMES.filter((n) => n !== peer.name)) {
        const a = decodedAll[i].remotes[other];
        const b = later[i].remotes[other];
        if (!b || b.framesDecoded <= a.framesDecoded || b.frameWidth <= 0) {
          stuck.push(`${peer.name} <- ${other}: ${a.framesDecoded} -> ${b?.framesDecoded ?? 'gone'} frames`);
        } else {
          sizes.push(`${peer.name}<-${other} ${b.frameWidth}x${b.frameHeight} +${b.framesDecoded - a.framesDecoded}`);
        }
      }
    });
    if (stuck.length) throw new Error(`frames stopped coming: ${stuck.join('; ')}`);
    return `in ${secs(SAMPLE_GAP_MS)}: ${sizes.join(', ')}`;
  }, { soft: true });

  for (const peer of [p1, p2, p3]) {
    const m = await readMedia(peer).catch(() => null);
    selectedPairs[peer.name] = m?.pair ?? null;
    for (const line of m?.pairs ?? []) log(`${peer.name} candidate pair ${line}`);
  }

  await check("P2's selected candidate pair goes through the TURN relay", async () => {
    const pair = selectedPairs.P2;
    if (!pair) throw new Error('P2 has no selected candidate pair');
    if (pair.state !== 'succeeded') throw new Error(`pair is ${pair.state}: ${describePair(pair)}`);
    if (pair.local?.type !== 'relay') throw new Error(`local candidate is not a relay: ${describePair(pair)}`);
    if (pair.local.address !== config.turnIp) {
      throw new Error(`relay candidate is not on coturn's address ${config.turnIp}: ${describePair(pair)}`);
    }
    return describePair(pair);
  }, { soft: true });

  await check("coturn allocated a relay with P2's credentials and let it reach the server", async () => {
    // coturn writes its log lines with a little delay.
    const user = p2TurnUser.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    const server = config.srvIpTurn.replace(/\./g, '\\.');
    let text = '';
    await until(5000, async () => {
      text = readTurnLog();
      const allocated = new RegExp(`user <${user}>: incoming packet ALLOCATE processed, success`).test(text);
      const permitted = new RegExp(`peer ${server}(:\\d+)? lifetime updated`).test(text);
      if (allocated && permitted) return { ok: true };
      return {
        ok: false,
        why: `allocation for user ${p2TurnUser} logged: ${allocated}; permission towards ${config.srvIpTurn} logged: ${permitted}`,
      };
    }, 500);
    const sessions = new Set([...text.matchAll(/session (\d+): new,/g)].map((m) => m[1]));
    return `user ${p2TurnUser}; ${sessions.size} TURN session(s) in coturn's log`;
  }, { soft: true });

  await check("P3's selected candidate pair runs over TCP", async () => {
    const pair = selectedPairs.P3;
    if (!pair) throw new Error('P3 has no selected candidate pair');
    if (pair.state !== 'succeeded') throw new Error(`pair is ${pair.state}: ${describePair(pair)}`);
    if (pair.local?.protocol !== 'tcp' || pair.remote?.protocol !== 'tcp') {
      throw new Error(`pair is not TCP: ${describePair(pair)}`);
    }
    return describePair(pair);
  }, { soft: true });

  await check("P3's firewall dropped UDP (so TCP was not a free choice)", async () => {
    const drops = await p3Drops();
    if (drops.out <= 0) throw new Error(`no UDP packet dropped on the way out of P3 (in ${drops.in}, out ${drops.out})`);
    return `dropped ${drops.out} outgoing and ${drops.in} incoming UDP packets`;
  }, { soft: true });

  log(`P1's selected pair: ${describePair(selectedPairs.P1)}`);
}

// ---- main -------------------------------------------------------------------------------------

let shuttingDown = false;

async function printPageStates() {
  for (const peer of peers) {
    const m = await readMedia(peer).catch(() => null);
    if (!m) continue;
    console.log(`[${peer.name}] peer connection ${m.pc}, policy ${m.policy}, ICE servers ${(m.iceServers ?? []).join('; ')}`);
    console.log(`[${peer.name}] selected: ${describePair(m.pair)}`);
    for (const line of m.pairs ?? []) console.log(`[${peer.name}] pair ${line}`);
    console.log(`[${peer.name}] decoding ${JSON.stringify(m.remotes)}`);
  }
}

function dumpTurnLog() {
  let text = '';
  try {
    text = fs.readFileSync(config.turnOut, 'utf8');
  } catch {
    text = readTurnLog();
  }
  // Past its start-up report (lines stamped 0 s).
  const lines = text.split('\n').filter((l) => l.trim() && !/^0: /.test(l));
  if (!lines.length) return;
  const tail = lines.slice(-60);
  console.log(`---- last ${tail.length} lines of coturn's output ----`);
  for (const line of tail) console.log(`[coturn] ${line}`);
}

async function shutdown() {
  shuttingDown = true;
  await Promise.all(
    peers.map((peer) => withTimeout(peer.browser.close(), 5000, `closing ${peer.name}`).catch(() => {})),
  );
  await stopServer();
}

function summary() {
  for (const name of NAMES) {
    const times = Object.entries(firstFrameMs[name]).map(([other, ms]) => `from ${other} ${secs(ms)}`);
    const pair = selectedPairs[name];
    log(
      `${name}: first frame ${times.length ? times.join(', ') : 'none'} after opening the page; ` +
        `selected ${describePair(pair)}`,
    );
  }
}

function finish(code) {
  summary();
  console.log(`firewall-e2e: ${results.passed} passed, ${results.failed} failed`);
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
  onFailure: async (quick) => {
    serverLog.dump();
    for (const peer of peers) peer.log.dump();
    if (!quick) {
      await withTimeout(printPageStates(), 20_000, 'page states').catch((err) => log(err.message));
    }
    dumpTurnLog();
  },
});
