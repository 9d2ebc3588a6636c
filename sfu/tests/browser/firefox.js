#!/usr/bin/env node
// End-to-end test with a second browser engine: a headless Firefox ESR page (driven over WebDriver
// BiDi by puppeteer-core) and a headless Chromium page join one room through the demo page. Each
// must decode the other's video and receive the other's audio, and decode the other's frames at
// about the rate they are encoded (nothing dropped on a clean link). Firefox offers first, so the
// server's later offers to it keep the header-extension ids of Firefox's first offer, give no id
// Firefox uses for another extension, and list only the extensions the server uses
// (docs/protocol.md, "RTP header extensions"): those are printed and checked.
//
// Run it inside a private network namespace where only `lo` exists (see run.sh):
//   SFU_BIN=target/release/sfu E2E_SCRIPT=firefox.js E2E_APT_PACKAGES=firefox-esr \
//     bash sfu/tests/browser/run.sh
//
// Environment:
//   SFU_BIN         the server binary (required)
//   E2E_HTTP_PORT   HTTP/WebSocket port (default 18080)
//   E2E_UDP_PORT    media UDP port (default 40000)
//   CHROMIUM_PATH   Chromium binary (default /usr/bin/chromium)
//   FIREFOX_PATH    Firefox binary (default /usr/bin/firefox-esr)
//   E2E_VERBOSE=1   stream the server's and the pages' logs instead of printing them on failure
//   RUST_LOG        passed to the server (default info)
'use strict';

const fs = require('node:fs');
const puppeteer = require('puppeteer-core');
const harness = require('./harness');

const { withTimeout, sleep } = harness;

const JOIN_TIMEOUT_MS = 20_000;
/** Both joined until each decodes the other's video. */
const MEDIA_TIMEOUT_MS = 30_000;
/** The window the frame rates are measured over, and how long they may take to match. */
const FRAME_RATE_WINDOW_MS = 2_000;
const FRAME_RATE_TIMEOUT_MS = 15_000;
/** Decoded frames per second at least this share of the sender's encoded ones. */
const FRAME_RATE_SHARE = 0.8;

/**
 * Firefox in a namespace with nothing but `lo`: fake devices without a prompt (without
 * `permission.fake` it gathers no candidates at all), host candidates on loopback, not hidden
 * behind mDNS names.
 */
const FIREFOX_PREFS = {
  'media.navigator.streams.fake': true,
  'media.navigator.permission.disabled': true,
  'media.navigator.permission.fake': true,
  'media.peerconnection.ice.loopback': true,
  'media.peerconnection.ice.obfuscate_host_addresses': false,
  'media.autoplay.default': 0,
};

/** The header extensions the server negotiates (sfu/src/core/mod.rs, `header_extensions`). */
const SERVER_EXTENSIONS = new Set([
  'urn:ietf:params:rtp-hdrext:ssrc-audio-level',
  'http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01',
  'urn:ietf:params:rtp-hdrext:sdes:mid',
  'urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id',
  'urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id',
  'https://aomediacodec.github.io/av1-rtp-spec/#dependency-descriptor-rtp-header-extension',
  'urn:3gpp:video-orientation',
]);

const script = harness.browserScript('firefox', {
  room: 'engines',
  plannedChecks: 7,
  extra: { firefoxPath: process.env.FIREFOX_PATH || '/usr/bin/firefox-esr' },
});
const { config, log, check, until } = script;
const peers = script.pages;

// ---- the pages --------------------------------------------------------------------------------

async function launchFirefox(name) {
  const browser = await puppeteer.launch({
    browser: 'firefox',
    executablePath: config.firefoxPath,
    headless: true,
    extraPrefsFirefox: FIREFOX_PREFS,
    protocolTimeout: 20_000,
  });
  script.browsers.push(browser);
  const page = await browser.newPage();
  await page.evaluateOnNewDocument(keepFirstOffer);
  const peer = { name, engine: 'Firefox', browser, page, log: script.tail(name) };
  page.on('console', (m) => peer.log.push(`console.${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => peer.log.push(`pageerror: ${e.message}`));
  peers.push(peer);
  return peer;
}

function pageUrl(peer) {
  return `http://127.0.0.1:${config.httpPort}/?room=${config.room}&name=${peer.name}&autojoin=1`;
}

/**
 * In the page: the client's state and id, what it sends and receives (the room has one other
 * participant, so every inbound stream is theirs), and its current remote description.
 */
async function stateInPage() {
  const { client } = window.sfuDemo;
  const out = {
    state: client.state,
    id: client.participantId,
    framesDecoded: 0,
    frameWidth: 0,
    audioReceived: 0,
    framesEncoded: 0,
    videoSent: 0,
    audioSent: 0,
    remoteSdp: null,
    remoteType: null,
  };
  const pc = client.pc;
  if (!pc) return out;
  out.remoteSdp = pc.currentRemoteDescription?.sdp ?? null;
  out.remoteType = pc.currentRemoteDescription?.type ?? null;
  (await pc.getStats()).forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'video') {
      out.framesDecoded += s.framesDecoded ?? 0;
      out.frameWidth = Math.max(out.frameWidth, s.frameWidth ?? 0);
    }
    if (s.type === 'inbound-rtp' && s.kind === 'audio') out.audioReceived += s.packetsReceived ?? 0;
    if (s.type === 'outbound-rtp' && s.kind === 'video') {
      out.videoSent += s.packetsSent ?? 0;
      // Every simulcast encoding runs at the camera's frame rate: the busiest one counts.
      out.framesEncoded = Math.max(out.framesEncoded, s.framesEncoded ?? 0);
    }
    if (s.type === 'outbound-rtp' && s.kind === 'audio') out.audioSent += s.packetsSent ?? 0;
  });
  return out;
}

/** Before the page's own scripts: keeps the first offer the page sets as its local description. */
function keepFirstOffer() {
  const set = RTCPeerConnection.prototype.setLocalDescription;
  RTCPeerConnection.prototype.setLocalDescription = async function (description, ...rest) {
    const result = await set.call(this, description, ...rest);
    if (!window.firstOffer && this.localDescription?.type === 'offer') window.firstOffer = this.localDescription.sdp;
    return result;
  };
}

/** The header extensions of `sdp` by media kind: `{ audio: { uri: id }, video: ... }`. */
function extensionsOf(sdp) {
  const byKind = {};
  for (const section of (sdp || '').split(/\r\n(?=m=)/).filter((s) => s.startsWith('m='))) {
    const kind = section.slice(2, section.indexOf(' '));
    for (const line of section.split('\r\n').filter((l) => l.startsWith('a=extmap:'))) {
      const [idDir, uri] = line.slice('a=extmap:'.length).split(' ');
      (byKind[kind] ??= {})[uri] = Number(idDir.split('/')[0]);
    }
  }
  return byKind;
}

/** `{ crToFf: { sent, decoded }, ffToCr: ... }` in frames per second, as text. */
function describeRates(rates) {
  const one = (r) => (r ? `${r.sent.toFixed(1)} encoded, ${r.decoded.toFixed(1)} decoded per second` : 'not measured');
  return `Chromium to Firefox ${one(rates.crToFf)}; Firefox to Chromium ${one(rates.ffToCr)}`;
}

const snapshot = (peer) => withTimeout(peer.page.evaluate(stateInPage), 5000, `${peer.name} snapshot`);

/** Waits until `viewer` decodes video and receives audio, both rising between two samples. */
async function receives(viewer) {
  let last = null;
  let seen = null;
  await until(MEDIA_TIMEOUT_MS, async () => {
    const s = await snapshot(viewer);
    const rising =
      last && s.framesDecoded > last.framesDecoded && s.audioReceived > last.audioReceived && s.frameWidth > 0;
    last = s;
    seen = s;
    const why = `${viewer.name}: ${s.framesDecoded} frames decoded, ${s.audioReceived} audio packets`;
    return rising ? { ok: true } : { ok: false, why };
  }, 1000);
  return seen;
}

// ---- the scenario -----------------------------------------------------------------------------

async function scenario() {
  if (!config.sfuBin || !fs.existsSync(config.sfuBin)) throw new Error(`SFU_BIN=${config.sfuBin} does not exist`);
  for (const browser of [config.chromiumPath, config.firefoxPath]) {
    if (!fs.existsSync(browser)) throw new Error(`no browser at ${browser}`);
  }
  script.startServer();
  await script.checkHealth();

  const [ff, cr] = await Promise.all([
    launchFirefox('FF'),
    script.launchPage('CR', { fields: { engine: 'Chromium' } }),
  ]);

  await check('the Firefox and Chromium pages join', async () => {
    const ids = await script.joinPages(pageUrl, snapshot, JOIN_TIMEOUT_MS);
    return `FF ${ids.FF}, CR ${ids.CR}`;
  });

  await check('Chromium decodes the video and receives the audio Firefox sends', async () => {
    const s = await receives(cr);
    return `${s.framesDecoded} frames (${s.frameWidth} wide), ${s.audioReceived} audio packets`;
  });

  await check('Firefox decodes the video and receives the audio Chromium sends', async () => {
    const s = await receives(ff);
    return `${s.framesDecoded} frames (${s.frameWidth} wide), ${s.audioReceived} audio packets`;
  });

  await check("the server's descriptions for Firefox keep its first offer's ids, for the server's extensions only", async () => {
    const s = await snapshot(ff);
    const first = await withTimeout(ff.page.evaluate(() => window.firstOffer ?? null), 5000, 'FF offer');
    if (!first) throw new Error("Firefox's first offer was not seen");
    const own = extensionsOf(first);
    const remote = extensionsOf(s.remoteSdp);
    // One id names one extension in the whole bundle.
    const firefoxIds = new Map();
    for (const byUri of Object.values(own)) for (const [uri, id] of Object.entries(byUri)) firefoxIds.set(id, uri);
    const problems = [];
    for (const kind of ['audio', 'video']) {
      const mine = own[kind] ?? {};
      const theirs = remote[kind] ?? {};
      if (!Object.keys(theirs).length) problems.push(`no ${kind} extensions from the server`);
      for (const [uri, id] of Object.entries(theirs)) {
        if (!SERVER_EXTENSIONS.has(uri)) problems.push(`${kind}: the server lists ${uri}`);
        if (mine[uri] !== undefined && mine[uri] !== id) problems.push(`${kind}: ${uri} is ${id}, Firefox's id is ${mine[uri]}`);
        const other = firefoxIds.get(id);
        if (other && other !== uri) problems.push(`${kind}: id ${id} is ${uri}, in Firefox's offer ${other}`);
      }
      log(`${kind} extensions (the server's ${s.remoteType}): ${Object.entries(theirs).map(([u, id]) => `${id} ${u}`).join(', ')}`);
    }
    const twcc = 'http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01';
    if (!remote.video?.[twcc]) problems.push('no transport-wide sequence numbers on video');
    if (problems.length) throw new Error(problems.join('; '));
    return `audio ${Object.keys(remote.audio).length}, video ${Object.keys(remote.video).length} extensions`;
  });

  await check('each decodes the frames the other encodes, at their rate', async () => {
    // On a clean link every frame is forwarded, whatever layer: the decoded rate keeps up with
    // the sender's encoded rate (Chromium's fake camera runs at 20 frames a second, Firefox's
    // at 30), measured over FRAME_RATE_WINDOW_MS once the allocation has settled.
    const rates = {};
    await until(FRAME_RATE_TIMEOUT_MS, async () => {
      const before = await Promise.all([snapshot(ff), snapshot(cr)]);
      const t0 = Date.now();
      await sleep(FRAME_RATE_WINDOW_MS);
      const after = await Promise.all([snapshot(ff), snapshot(cr)]);
      const secs = (Date.now() - t0) / 1000;
      const fps = (i, key) => (after[i][key] - before[i][key]) / secs;
      rates.crToFf = { sent: fps(1, 'framesEncoded'), decoded: fps(0, 'framesDecoded') };
      rates.ffToCr = { sent: fps(0, 'framesEncoded'), decoded: fps(1, 'framesDecoded') };
      const low = Object.values(rates).filter((r) => r.sent <= 0 || r.decoded < FRAME_RATE_SHARE * r.sent);
      const why = describeRates(rates);
      return low.length ? { ok: false, why } : { ok: true, why };
    }, 0);
    return describeRates(rates);
  });

  await check('both keep receiving after the checks above', async () => {
    const [a, b] = await Promise.all([receives(cr), receives(ff)]);
    return `CR ${a.framesDecoded} frames, FF ${b.framesDecoded} frames`;
  });
}

// ---- main -------------------------------------------------------------------------------------

script.run({ scenario, pageState: snapshot });
