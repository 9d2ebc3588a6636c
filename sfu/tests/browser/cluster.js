#!/usr/bin/env node
// Two Chromium pages on two nodes of a cluster: P1 opens the demo page on node A, P2 on node B,
// both for room `cluster`. A real redis-server holds the cluster's state. The room lands on one
// node; the page on the other is answered with `redirect` and follows it (its page's CSP must
// allow the other node's origin). Checks that both pages are in one room on one node and decode
// each other's video, and reports the join time of each page.
//
// With E2E_CLUSTER_RELAY=1 the nodes share a cluster secret and take one participant of a room
// each: P2, which opens the page on node A too, is sent to node B, which relays the room with
// node A, and the pages meet through the relay between the nodes instead. Then node B is killed:
// P2's client finds B gone, joins again through node A (where it opened the page), and the pages
// see each other's video again.
//
// Run it inside a private network namespace where only `lo` exists (see run.sh):
//   SFU_BIN=/path/to/sfu E2E_SCRIPT=cluster.js bash run.sh
//
// Environment:
//   SFU_BIN          the server binary (required)
//   CHROMIUM_PATH    browser binary (default /usr/bin/chromium)
//   E2E_VERBOSE=1    stream the servers' and the pages' logs instead of printing them on failure
'use strict';

const { execFileSync, spawn } = require('node:child_process');
const net = require('node:net');
const { chromium } = require('playwright-core');
const harness = require('./harness');
const { CHROMIUM_ARGS, LogTail, httpStatus, killGroup, runScript, spawnLogged, stopGroup, until, sleep } = harness;

const env = process.env;
const config = {
  sfuBin: env.SFU_BIN,
  chromiumPath: env.CHROMIUM_PATH || '/usr/bin/chromium',
  verbose: env.E2E_VERBOSE === '1',
  relay: env.E2E_CLUSTER_RELAY === '1',
  redisPort: 16390,
  nodes: { A: { http: 18121, udp: 40420 }, B: { http: 18122, udp: 40430 } },
  room: 'cluster',
};
const KEYS = { SFU_API_KEY: 'APIcluster', SFU_API_SECRET: 'a-secret-for-the-cluster-test-of-40-chars' };

const results = { passed: 0, failed: 0 };
const logs = { redis: new LogTail('redis', config.verbose), A: new LogTail('sfu-A', config.verbose), B: new LogTail('sfu-B', config.verbose) };
const pageLogs = {};
const children = {};
const browsers = [];
const log = (line) => console.log(`[cluster] ${line}`);

function check(ok, what) {
  results[ok ? 'passed' : 'failed']++;
  log(`${ok ? 'ok' : 'FAIL'}: ${what}`);
  return ok;
}

function redisInstalled() {
  try {
    execFileSync('redis-server', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

async function portOpen(port) {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

function token(identity) {
  return execFileSync(config.sfuBin, ['token', '--room', config.room, '--identity', identity, '--name', identity], {
    env: { ...env, ...KEYS },
  })
    .toString()
    .trim()
    .split('\n')
    .pop();
}

async function openPage(name, node) {
  const browser = await chromium.launch({ executablePath: config.chromiumPath, headless: true, args: CHROMIUM_ARGS });
  browsers.push(browser);
  const page = await browser.newPage();
  pageLogs[name] = new LogTail(name, config.verbose);
  page.on('console', (m) => pageLogs[name].push(`console.${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => pageLogs[name].push(`pageerror: ${e.message}`));
  const q = new URLSearchParams({ room: config.room, name, token: token(name.toLowerCase()), autojoin: '1' });
  const opened = Date.now();
  await page.goto(`http://127.0.0.1:${config.nodes[node].http}/?${q}`, { waitUntil: 'domcontentloaded' });
  await until(25_000, async () => {
    const s = await page.evaluate(() => ({ state: window.sfuDemo.client.state, id: window.sfuDemo.client.participantId }));
    return s.state === 'joined' && s.id ? { ok: true } : { ok: false, why: `${name} is ${s.state}` };
  }, 100);
  return { name, page, joinMs: Date.now() - opened };
}

/** Frames decoded from the one other participant, and how many others the page sees. */
async function state(peer) {
  return peer.page.evaluate(async () => {
    const { client } = window.sfuDemo;
    let frames = 0;
    if (client.pc) {
      const stats = await client.pc.getStats();
      stats.forEach((s) => {
        if (s.type === 'inbound-rtp' && s.kind === 'video') frames = Math.max(frames, s.framesDecoded ?? 0);
      });
    }
    return { frames, others: client.participants.size };
  });
}

/** Video frames decoded on all of the page's inbound video streams together. */
async function framesDecoded(peer) {
  return peer.page.evaluate(async () => {
    const { client } = window.sfuDemo;
    let frames = 0;
    if (client.pc) {
      (await client.pc.getStats()).forEach((s) => {
        if (s.type === 'inbound-rtp' && s.kind === 'video') frames += s.framesDecoded ?? 0;
      });
    }
    return frames;
  });
}

/** Node B dies under P2: P2 comes back through node A, and the pages see each other again. */
async function nodeLoss(p1, p2) {
  const session = () => p2.page.evaluate(() => ({ state: window.sfuDemo.client.state, id: window.sfuDemo.client.participantId }));
  const before = (await session()).id;
  const killed = Date.now();
  killGroup(children.B, 'SIGKILL');
  await children.B.exited;
  const back = await until(40_000, async () => {
    const s = await session();
    return s.state === 'joined' && s.id && s.id !== before ? { ok: true } : { ok: false, why: JSON.stringify(s) };
  }, 200).then(() => true, (e) => {
    log(e.message);
    return false;
  });
  if (!check(back, `P2 joined again ${Date.now() - killed} ms after its node was killed`)) return;
  const onA = logs.A.lines.filter((l) => /signal::ws: joined$/.test(l)).length;
  check(onA === 2, `P2 is on node A now (${onA} joins there)`);
  // Frames of P2's new stream at P1, and of P1's at P2's new peer connection.
  const start = await Promise.all([framesDecoded(p1), framesDecoded(p2)]);
  let last = null;
  const again = await until(30_000, async () => {
    const [s1, s2] = await Promise.all([state(p1), state(p2)]);
    const frames = await Promise.all([framesDecoded(p1), framesDecoded(p2)]);
    last = { s1, s2, frames, start };
    const ok = s1.others === 1 && s2.others === 1 && frames[0] > start[0] + 10 && frames[1] > 10;
    return ok ? { ok: true } : { ok: false, why: JSON.stringify(last) };
  }, 250).then(() => true, (e) => {
    log(e.message);
    return false;
  });
  check(again, `the pages decode each other's video again, ${Date.now() - killed} ms after the kill (${JSON.stringify(last)})`);
}

async function scenario() {
  if (!redisInstalled()) {
    if (process.getuid?.() === 0) {
      log('installing redis-server');
      execFileSync('apt-get', ['install', '-y', '-q', 'redis-server'], { stdio: 'ignore', env: { ...env, DEBIAN_FRONTEND: 'noninteractive' } });
    }
    if (!check(redisInstalled(), "Debian's redis-server is installed")) return;
  }
  children.redis = spawnLogged('redis-server', ['--port', String(config.redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], env, logs.redis);
  await until(10_000, async () => ((await portOpen(config.redisPort)) ? { ok: true } : { ok: false, why: 'redis not up' }), 50);
  for (const node of ['A', 'B']) {
    const n = config.nodes[node];
    const args = ['--http', `127.0.0.1:${n.http}`, '--udp-port', String(n.udp), '--advertise-ip', '127.0.0.1', '--workers', '1',
      '--redis', `redis://127.0.0.1:${config.redisPort}/0`, '--node-id', `node-${node.toLowerCase()}`];
    if (config.relay) args.push('--cluster-secret', 'a-cluster-secret-for-the-browser-test', '--cluster-room-participants-per-node', '1');
    children[node] = spawnLogged(config.sfuBin, args, { ...env, ...KEYS, NO_COLOR: '1' }, logs[node]);
  }
  await until(20_000, async () => {
    const codes = await Promise.all(['A', 'B'].map((n) => httpStatus(`http://127.0.0.1:${config.nodes[n].http}/readyz`, 1000)));
    return codes.every((c) => c === 200) ? { ok: true } : { ok: false, why: `readyz ${codes}` };
  }, 200);
  // Each node has read the other's entry (refreshed every second).
  await sleep(2200);

  const p1 = await openPage('P1', 'A');
  const p2 = await openPage('P2', config.relay ? 'A' : 'B');
  check(true, `P1 joined through node A in ${p1.joinMs} ms, P2 through node ${config.relay ? 'A' : 'B'} in ${p2.joinMs} ms`);

  let last = null;
  const both = await until(30_000, async () => {
    const s = await Promise.all([state(p1), state(p2)]);
    last = s;
    const ok = s.every((x) => x.others === 1 && x.frames > 10);
    return ok ? { ok: true } : { ok: false, why: JSON.stringify(s) };
  }, 250).then(() => true, (e) => {
    log(e.message);
    return false;
  });
  check(both, `both pages are in one room and decode each other's video (${JSON.stringify(last)})`);

  const joinedOn = ['A', 'B'].filter((n) => logs[n].lines.some((l) => /signal::ws: joined$/.test(l)));
  if (config.relay) {
    // One participant on each node, and a relay between them.
    check(joinedOn.length === 2, `each node has one participant (${joinedOn.join(', ')})`);
    const relayed = ['A', 'B'].filter((n) => logs[n].lines.some((l) => l.includes('relay open')));
    check(relayed.length === 2, `the nodes opened a relay (${relayed.join(', ')})`);
    await nodeLoss(p1, p2);
    return;
  }
  // Exactly one node has the room's participants (its log says so).
  check(joinedOn.length === 1, `the participants joined on one node (${joinedOn.join(', ')})`);
  const redirectedOn = ['A', 'B'].filter((n) => logs[n].lines.some((l) => l.includes('sent to another node')));
  check(redirectedOn.length === 1 && redirectedOn[0] !== joinedOn[0], `the other node redirected its page (${redirectedOn.join(', ')})`);
}

async function shutdown() {
  await Promise.all(browsers.map((b) => b.close().catch(() => {})));
  await Promise.all(['A', 'B', 'redis'].map((n) => stopGroup(children[n])));
}

runScript({
  scenario,
  shutdown,
  results,
  log,
  hardTimeoutMs: 180_000,
  server: () => children.A,
  finish: (code) => {
    log(`${results.passed} passed, ${results.failed} failed`);
    process.exit(code);
  },
  onFailure: () => {
    for (const l of Object.values(logs)) l.dump();
    for (const l of Object.values(pageLogs)) l.dump();
  },
});
