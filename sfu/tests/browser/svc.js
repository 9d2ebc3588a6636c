#!/usr/bin/env node
// End-to-end test of SVC layer selection with real browsers. P publishes its fake 1280x720
// camera as VP9 (or AV1, with SVC_CODEC=av1) with `scalabilityMode: 'L3T3_KEY'` (one stream,
// three spatial layers; the demo page's `?codec=vp9&scalability=L3T3_KEY`). Two watchers in one Chromium process: BIG shows P's
// video at 1280x720 CSS pixels, SMALL at 320x180. The server must forward BIG all spatial
// layers (it decodes 1280 wide) and SMALL only the lowest (320 wide); when SMALL's tile grows to
// 1280x720 it must get the top layer too (the server switches up at a keyframe it asks for).
//
// With SVC_PUBLISH=simulcast, P publishes three simulcast encodings (q, h, f) instead: the same
// checks then cover simulcast switching, with the picture ids the server renumbers (VP9).
//
// AV1 says nothing about layers in its payload: the server reads them from the dependency
// descriptor header extension that Chromium sends with it.
//
// Run it inside a private network namespace where only `lo` exists (see run.sh):
//   SFU_BIN=target/release/sfu E2E_SCRIPT=svc.js bash sfu/tests/browser/run.sh
//   SFU_BIN=target/release/sfu E2E_SCRIPT=svc.js SVC_PUBLISH=simulcast bash sfu/tests/browser/run.sh
//
// Environment:
//   SFU_BIN         the server binary (required)
//   E2E_HTTP_PORT   HTTP/WebSocket port (default 18080)
//   E2E_UDP_PORT    media UDP port (default 40000)
//   CHROMIUM_PATH   browser binary (default /usr/bin/chromium)
//   SVC_CODEC       `vp9` (default) or `av1`
//   SVC_PUBLISH     `svc` (default: one L3T3_KEY encoding) or `simulcast` (three encodings, each
//                   L1T3: the bundled client's choice for VP9 and AV1 simulcast)
//   E2E_VERBOSE=1   stream the server's and the pages' logs instead of printing them on failure
//   RUST_LOG        passed to the server (default info)
'use strict';

const fs = require('node:fs');
const harness = require('./harness');

const { withTimeout } = harness;

const SIMULCAST = process.env.SVC_PUBLISH === 'simulcast';
const CODEC_NAME = process.env.SVC_CODEC === 'av1' ? 'av1' : 'vp9';
/** The codec's name as statistics give it, and for the check names. */
const CODEC = CODEC_NAME.toUpperCase();
const MIME = `video/${CODEC}`;
/** What P publishes, for the check names. */
const publishing = SIMULCAST ? `${CODEC} simulcast` : `${CODEC} SVC`;

const JOIN_TIMEOUT_MS = 15_000;
/**
 * Until a watcher decodes the width it should. The publisher's encoder adds its spatial layers
 * as its own bandwidth estimate grows, and the server's estimate towards BIG ramps up to the
 * three layers together: tens of seconds on a loaded machine.
 */
const MEDIA_TIMEOUT_MS = 60_000;
/** A width counts once it held for this many consecutive samples with frames decoded. */
const STEADY_SAMPLES = 3;
const SAMPLE_MS = 500;
/** The window over which the watchers' received bit rates are compared. */
const RATE_WINDOW_MS = 3000;

const script = harness.browserScript(`svc (${publishing})`, {
  room: 'svc',
  plannedChecks: 7,
  hardTimeoutMs: 180_000,
  extra: { simulcast: SIMULCAST, codec: CODEC_NAME },
});
const { config, log, check, until } = script;
const peers = script.pages;

// ---- the server and the pages -----------------------------------------------------------------

/** The server's CPU time so far (utime + stime, in 1/100 s: fields 14 and 15 of /proc/PID/stat). */
function serverCpuTicks() {
  const stat = fs.readFileSync(`/proc/${script.server.pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[11]) + Number(fields[12]);
}

/** The size a watcher shows P's video at (CSS pixels), and only tiles with video. */
const tileCss = (w, h) => `
  #remotes { max-width: none !important; display: block !important; }
  #remotes .tile[data-video="off"] { display: none !important; }
  #remotes .tile .frame { width: ${w}px !important; height: ${h}px !important; aspect-ratio: auto !important; }`;

/** Before the page's scripts: adds `css` as soon as the document has a head. */
function addStyleInPage(css) {
  const add = () => {
    const style = document.createElement('style');
    style.id = 'svc-test-style';
    style.textContent = css;
    document.head.append(style);
  };
  if (document.head) add();
  else document.addEventListener('DOMContentLoaded', add, { once: true });
}

async function newPeer(browser, name, viewport, css) {
  // The tiles are sized with a style sheet of the test's own, which the server's
  // Content-Security-Policy (style-src 'self') rightly refuses to the page.
  const context = await browser.newContext({ viewport, deviceScaleFactor: 1, bypassCSP: true });
  if (css) await context.addInitScript(addStyleInPage, css);
  const page = await context.newPage();
  const peer = { name, browser, page, log: script.tail(name) };
  page.on('console', (m) => peer.log.push(`console.${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => peer.log.push(`pageerror: ${e.message}`));
  page.on('crash', () => peer.log.push('page crashed'));
  peers.push(peer);
  return peer;
}

async function openAndJoin(peer, extra) {
  const q = new URLSearchParams({ room: config.room, name: peer.name, autojoin: '1', ...extra });
  await peer.page.goto(`http://127.0.0.1:${config.httpPort}/?${q}`, {
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
  }, 250);
}

/** In a page: what it sends and what it decodes (video only). */
async function videoInPage() {
  const pc = window.sfuDemo?.client.pc;
  const out = { outbound: [], inbound: [], packetsIn: 0 };
  if (!pc) return out;
  const stats = await pc.getStats();
  const codec = (id) => (id && stats.get(id) ? stats.get(id).mimeType : null);
  stats.forEach((s) => {
    if (s.type === 'inbound-rtp') out.packetsIn += s.packetsReceived ?? 0;
    if (s.type === 'outbound-rtp' && s.kind === 'video') {
      out.outbound.push({
        rid: s.rid ?? null,
        codec: codec(s.codecId),
        scalabilityMode: s.scalabilityMode ?? null,
        framesEncoded: s.framesEncoded ?? 0,
        frameWidth: s.frameWidth ?? 0,
      });
    }
    if (s.type === 'inbound-rtp' && s.kind === 'video') {
      out.inbound.push({
        codec: codec(s.codecId),
        framesDecoded: s.framesDecoded ?? 0,
        frameWidth: s.frameWidth ?? 0,
        frameHeight: s.frameHeight ?? 0,
        bytesReceived: s.bytesReceived ?? 0,
        at: s.timestamp,
        packetsLost: s.packetsLost ?? 0,
        nackCount: s.nackCount ?? 0,
        pliCount: s.pliCount ?? 0,
      });
    }
  });
  return out;
}

const video = (peer) => withTimeout(peer.page.evaluate(videoInPage), 5000, `${peer.name} stats`);

/**
 * Waits until `peer` decodes video `width` wide, frames rising, for STEADY_SAMPLES samples in a
 * row. Returns the last sample.
 */
async function decodesWidth(peer, width, timeoutMs = MEDIA_TIMEOUT_MS) {
  let last = null;
  let steady = 0;
  await until(timeoutMs, async () => {
    const v = (await video(peer)).inbound.find((i) => i.framesDecoded > 0) ?? null;
    const rising = v && last && v.framesDecoded > last.framesDecoded;
    steady = rising && v.frameWidth === width ? steady + 1 : 0;
    last = v;
    return steady >= STEADY_SAMPLES
      ? { ok: true }
      : { ok: false, why: `${peer.name} decodes ${v ? `${v.codec} ${v.frameWidth}x${v.frameHeight}, ${v.framesDecoded} frames` : 'nothing'}` };
  }, SAMPLE_MS);
  return last;
}

// ---- the scenario -----------------------------------------------------------------------------

async function scenario() {
  if (!config.sfuBin || !fs.existsSync(config.sfuBin)) throw new Error(`SFU_BIN=${config.sfuBin} does not exist`);
  if (!fs.existsSync(config.chromiumPath)) throw new Error(`no browser at ${config.chromiumPath} (set CHROMIUM_PATH)`);
  script.startServer();
  await script.checkHealth();

  const [pb, wb] = await Promise.all([script.launchBrowser(), script.launchBrowser()]);
  const p = await newPeer(pb, 'P', { width: 640, height: 480 }, null);
  const big = await newPeer(wb, 'BIG', { width: 1400, height: 900 }, tileCss(1280, 720));
  const small = await newPeer(wb, 'SMALL', { width: 1400, height: 900 }, tileCss(320, 180));

  const publishes = config.simulcast ? `three ${CODEC} encodings (q, h, f)` : `${CODEC} with scalabilityMode L3T3_KEY`;
  await check(`P publishes ${publishes}`, async () => {
    const query = config.simulcast
      ? { codec: config.codec }
      : { codec: config.codec, scalability: 'L3T3_KEY', simulcast: '0' };
    await openAndJoin(p, query);
    let seen = null;
    let rids = [];
    await until(JOIN_TIMEOUT_MS, async () => {
      seen = (await video(p)).outbound.filter((o) => o.framesEncoded > 0);
      rids = await p.page.evaluate(() => {
        const t = window.sfuDemo?.client.pc?.getTransceivers().find((x) => x.sender.track?.kind === 'video');
        return (t?.sender.getParameters().encodings ?? []).map((e) => e.rid ?? null);
      });
      return seen.length ? { ok: true } : { ok: false, why: `P encodes ${JSON.stringify(seen)}` };
    }, 250);
    // With nobody watching yet, the server has P pause its simulcast layers above the lowest
    // (paused encodings have no outbound statistics).
    const ok = config.simulcast
      ? rids.join() === 'q,h,f' && seen.every((o) => o.codec === MIME && o.rid)
      : seen.length === 1 && seen[0].codec === MIME && seen[0].scalabilityMode === 'L3T3_KEY';
    if (!ok) throw new Error(`P sends ${JSON.stringify(seen)}, encodings ${rids.join()}`);
    return seen.map((o) => `${o.rid ?? ''} ${o.codec} ${o.scalabilityMode ?? ''}`.trim()).join(', ');
  });

  await check('BIG (1280x720 tile) and SMALL (320x180 tile) join as watchers', async () => {
    await Promise.all([openAndJoin(big, { media: 'none' }), openAndJoin(small, { media: 'none' })]);
  });

  await check('P encodes its top layer (1280 wide)', async () => {
    let o = null;
    await until(MEDIA_TIMEOUT_MS, async () => {
      const out = (await video(p)).outbound.filter((x) => x.framesEncoded > 0);
      o = out.find((x) => x.frameWidth === 1280) ?? out[0];
      return o?.frameWidth === 1280 ? { ok: true } : { ok: false, why: `P encodes ${JSON.stringify(out)}` };
    }, SAMPLE_MS);
    return `${o.frameWidth} wide`;
  });

  await check(`BIG decodes ${CODEC} at 1280 wide (the top layer)`, async () => {
    const v = await decodesWidth(big, 1280);
    if (v.codec !== MIME) throw new Error(`BIG decodes ${v.codec}`);
    return `${v.codec} ${v.frameWidth}x${v.frameHeight}`;
  });

  await check(`SMALL decodes ${CODEC} at 320 wide (the lowest layer only)`, async () => {
    const v = await decodesWidth(small, 320);
    if (v.codec !== MIME) throw new Error(`SMALL decodes ${v.codec}`);
    // What each watcher receives, over the same few seconds (a measurement, not a wait for
    // a condition).
    const cpu0 = serverCpuTicks();
    const first = await Promise.all([video(small), video(big)]);
    await harness.sleep(RATE_WINDOW_MS);
    const second = await Promise.all([video(small), video(big)]);
    const cpu1 = serverCpuTicks();
    const packets = second.reduce((n, s, i) => n + s.packetsIn - first[i].packetsIn, 0);
    if (packets > 0) {
      const us = ((cpu1 - cpu0) * 10_000) / packets;
      log(`server CPU: ${((cpu1 - cpu0) / 100).toFixed(2)} s for ${packets} packets the watchers received (${us.toFixed(1)} µs per packet, ${Math.round((packets * 1000) / RATE_WINDOW_MS)} packets/s)`);
    }
    const kbps = (i) => {
      const [a, b] = [first[i].inbound[0], second[i].inbound[0]];
      return a && b && b.at > a.at ? Math.round(((b.bytesReceived - a.bytesReceived) * 8) / (b.at - a.at)) : 0;
    };
    const [smallKbps, bigKbps] = [kbps(0), kbps(1)];
    log(`over ${RATE_WINDOW_MS / 1000} s SMALL received ${smallKbps} kbit/s, BIG ${bigKbps} kbit/s`);
    if (!(smallKbps > 0 && smallKbps < bigKbps)) {
      throw new Error(`SMALL receives ${smallKbps} kbit/s, BIG ${bigKbps} kbit/s`);
    }
    return `${v.codec} ${v.frameWidth}x${v.frameHeight}; ${smallKbps} kbit/s (BIG ${bigKbps} kbit/s)`;
  });

  await check('SMALL grows its tile to 1280x720 and gets the top layer', async () => {
    await small.page.evaluate((css) => {
      document.getElementById('svc-test-style').textContent = css;
    }, tileCss(1280, 720));
    const v = await decodesWidth(small, 1280);
    // BIG kept its layers meanwhile.
    const b = (await video(big)).inbound.find((i) => i.framesDecoded > 0);
    if (b?.frameWidth !== 1280) throw new Error(`BIG now decodes ${b?.frameWidth} wide`);
    return `${v.frameWidth}x${v.frameHeight}, ${v.pliCount} keyframe requests from SMALL`;
  });
}

// ---- main -------------------------------------------------------------------------------------

script.run({ scenario, pageState: video });
