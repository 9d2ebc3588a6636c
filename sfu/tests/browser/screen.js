#!/usr/bin/env node
// End-to-end test of screen sharing: two headless Chromium pages join one room through the demo
// page. P1 shares a "screen" through the client API (`shareScreen({ stream })` with an animated
// 1280x720 canvas's captureStream, since headless Chromium has no screen to capture) next to its
// camera. P2 must learn the track's source (`screen`) from the server, find it in the
// participant's `screenStream` apart from the camera, and decode it at full resolution (a single
// layer) while the camera keeps arriving. P1 sends it with the settings for screen content;
// `stopScreenShare()` takes it off P2 again. Prints the times and the received size and rate.
//
// Run it inside a private network namespace where only `lo` exists (see run.sh):
//   SFU_BIN=target/release/sfu E2E_SCRIPT=screen.js bash sfu/tests/browser/run.sh
//
// Environment:
//   SFU_BIN         the server binary (required)
//   E2E_HTTP_PORT   HTTP/WebSocket port (default 18080)
//   E2E_UDP_PORT    media UDP port (default 40000)
//   CHROMIUM_PATH   browser binary (default /usr/bin/chromium)
//   E2E_VERBOSE=1   stream the server's and the pages' logs instead of printing them on failure
//   RUST_LOG        passed to the server (default info)
'use strict';

const fs = require('node:fs');
const harness = require('./harness');

const { withTimeout } = harness;

const JOIN_TIMEOUT_MS = 15_000;
/** Both joined until each decodes the other's video. */
const MEDIA_TIMEOUT_MS = 30_000;

const script = harness.browserScript('screen', { room: 'screens', plannedChecks: 6, hardTimeoutMs: 90_000 });
const { config, log, check, until } = script;
const peers = script.pages;

// ---- the pages --------------------------------------------------------------------------------

function pageUrl(peer) {
  return `http://127.0.0.1:${config.httpPort}/?room=${config.room}&name=${peer.name}&autojoin=1`;
}

/** In P1: shares an animated 1280x720 canvas as its screen. Returns when the offer is out. */
async function shareCanvas() {
  const canvas = document.createElement('canvas');
  canvas.width = 1280;
  canvas.height = 720;
  const ctx = canvas.getContext('2d');
  let n = 0;
  // Text and lines like a slide, with a moving marker so that frames keep coming.
  window.screenTimer = setInterval(() => {
    n++;
    ctx.fillStyle = '#fff';
    ctx.fillRect(0, 0, 1280, 720);
    ctx.fillStyle = '#123';
    ctx.font = '28px sans-serif';
    for (let i = 0; i < 12; i++) ctx.fillText(`Line ${i} of a shared slide, frame ${n}`, 40, 60 + i * 50);
    ctx.fillRect((n * 7) % 1200, 680, 80, 30);
  }, 66);
  const stream = canvas.captureStream(15);
  const { client } = window.sfuDemo;
  const events = [];
  client.addEventListener('screen-share', (e) => events.push(e.detail.active));
  window.screenEvents = events;
  const shared = await client.shareScreen({ stream, audio: false });
  return { sharing: client.screenSharing, same: shared === stream, hint: stream.getVideoTracks()[0].contentHint };
}

/** In P1: what it sends for the screen (encodings, preference) and its own tracks. */
async function screenSender() {
  const { client } = window.sfuDemo;
  const pc = client.pc;
  const t = pc.getTransceivers().find((x) => x.sender.track && x.sender.track === client.screenStream?.getVideoTracks()[0]);
  if (!t) return { mid: null };
  const params = t.sender.getParameters();
  const stats = await t.sender.getStats();
  let out = null;
  stats.forEach((s) => {
    if (s.type === 'outbound-rtp') out = { framesEncoded: s.framesEncoded ?? 0, width: s.frameWidth ?? 0, height: s.frameHeight ?? 0 };
  });
  return {
    mid: t.mid,
    encodings: params.encodings.map((e) => ({ rid: e.rid ?? null, maxBitrate: e.maxBitrate, maxFramerate: e.maxFramerate })),
    degradation: params.degradationPreference ?? null,
    out,
    events: window.screenEvents,
  };
}

/** In P2: what it knows and receives of participant `from`: sources, streams, inbound video. */
async function received(from) {
  const { client } = window.sfuDemo;
  const p = client.participants.get(from);
  if (!p || !client.pc) return { known: false };
  const stats = await client.pc.getStats();
  const inbound = new Map();
  stats.forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'video') inbound.set(s.trackIdentifier, s);
  });
  const video = (t) => {
    const s = inbound.get(t.id);
    return {
      trackId: client.serverTrackId(t),
      framesDecoded: s?.framesDecoded ?? 0,
      width: s?.frameWidth ?? 0,
      height: s?.frameHeight ?? 0,
      state: client.streamStates.get(client.serverTrackId(t))?.state ?? null,
      layer: client.streamStates.get(client.serverTrackId(t))?.layer ?? null,
    };
  };
  return {
    known: true,
    sources: Object.fromEntries(p.sources),
    camera: p.stream.getVideoTracks().map(video),
    screen: p.screenStream.getVideoTracks().map(video),
    stage: [...document.querySelectorAll('#stage .tile.screen')].map((t) => ({
      of: t.dataset.screenOf,
      tracks: t.querySelector('video')?.srcObject?.getVideoTracks().map((v) => client.serverTrackId(v)) ?? [],
      width: t.querySelector('video')?.videoWidth ?? 0,
    })),
    stageHidden: document.querySelector('#stage')?.hidden ?? null,
    at: performance.now(),
  };
}

const inPage = (peer, fn, arg) => withTimeout(peer.page.evaluate(fn, arg), 5000, `${peer.name} ${fn.name}`);

// ---- the scenario -----------------------------------------------------------------------------

async function scenario() {
  if (!config.sfuBin || !fs.existsSync(config.sfuBin)) throw new Error(`SFU_BIN=${config.sfuBin} does not exist`);
  if (!fs.existsSync(config.chromiumPath)) throw new Error(`no browser at ${config.chromiumPath} (set CHROMIUM_PATH)`);
  script.startServer();
  await script.checkHealth();

  const [p1, p2] = await Promise.all([script.launchPage('P1'), script.launchPage('P2')]);
  const ids = {};
  await check('both pages join', async () => {
    for (const peer of peers) await peer.page.goto(pageUrl(peer), { timeout: JOIN_TIMEOUT_MS });
    await until(JOIN_TIMEOUT_MS, async () => {
      const states = await Promise.all(
        peers.map((p) => inPage(p, () => ({ state: window.sfuDemo.client.state, id: window.sfuDemo.client.participantId }))),
      );
      states.forEach((s, i) => (ids[peers[i].name] = s.id));
      const camera = await inPage(p2, received, ids.P1);
      const ok = states.every((s) => s.state === 'joined' && s.id) && camera.camera?.[0]?.framesDecoded > 0;
      return ok ? { ok: true } : { ok: false, why: JSON.stringify({ states, camera }) };
    });
    return `P1 ${ids.P1}, P2 ${ids.P2}; P2 decodes P1's camera`;
  });

  let sharedAt = 0;
  await check('P1 shares a canvas as its screen with the settings for screen content', async () => {
    sharedAt = Date.now();
    const r = await inPage(p1, shareCanvas);
    if (!r.sharing || !r.same) throw new Error(JSON.stringify(r));
    if (r.hint !== 'detail') throw new Error(`contentHint is '${r.hint}'`);
    let s;
    await until(MEDIA_TIMEOUT_MS, async () => {
      s = await inPage(p1, screenSender);
      return s.out?.framesEncoded > 0 ? { ok: true } : { ok: false, why: JSON.stringify(s) };
    });
    if (s.encodings.length !== 1 || s.encodings[0].rid) throw new Error(`encodings ${JSON.stringify(s.encodings)}`);
    if (s.degradation && s.degradation !== 'maintain-resolution') throw new Error(`degradation ${s.degradation}`);
    log(`P1 sends the screen on mid ${s.mid}: ${JSON.stringify(s.encodings[0])}, degradationPreference ${s.degradation ?? 'unsupported'}, ${s.out.width}x${s.out.height}`);
    return `one encoding, ${s.out.width}x${s.out.height}, degradationPreference ${s.degradation ?? 'not reported'}`;
  });

  let first = null;
  await check("P2 learns the source and decodes the screen apart from the camera", async () => {
    await until(MEDIA_TIMEOUT_MS, async () => {
      const r = await inPage(p2, received, ids.P1);
      const sv = r.screen?.[0];
      if (sv?.framesDecoded > 0 && sv.width > 0) {
        first = { r, at: Date.now() };
        return { ok: true };
      }
      return { ok: false, why: JSON.stringify(r) };
    });
    const { r } = first;
    const sv = r.screen[0];
    if (r.sources[sv.trackId] !== 'screen') throw new Error(`sources ${JSON.stringify(r.sources)}`);
    if (r.camera.length !== 1 || r.sources[r.camera[0].trackId] !== 'camera') {
      throw new Error(`camera stream ${JSON.stringify(r.camera)}, sources ${JSON.stringify(r.sources)}`);
    }
    return `screen ${sv.trackId} decoded ${Date.now() - sharedAt < 0 ? 0 : first.at - sharedAt} ms after shareScreen()`;
  });

  await check('the screen keeps arriving at full size next to the camera', async () => {
    const a = await inPage(p2, received, ids.P1);
    await new Promise((resolve) => setTimeout(resolve, 4000));
    const b = await inPage(p2, received, ids.P1);
    const secs = (b.at - a.at) / 1000;
    const fps = (b.screen[0].framesDecoded - a.screen[0].framesDecoded) / secs;
    const camFps = (b.camera[0].framesDecoded - a.camera[0].framesDecoded) / secs;
    const { width, height, state, layer } = b.screen[0];
    log(`P2 receives the screen at ${width}x${height}, ${fps.toFixed(1)} frames/s (state ${state}, layer ${layer}); the camera at ${b.camera[0].width}x${b.camera[0].height}, ${camFps.toFixed(1)} frames/s`);
    if (width !== 1280 || height !== 720) throw new Error(`screen at ${width}x${height}`);
    if (fps < 5) throw new Error(`screen at ${fps.toFixed(1)} frames/s`);
    if (camFps < 5) throw new Error(`camera at ${camFps.toFixed(1)} frames/s`);
    if (state !== 'active' || layer !== null) throw new Error(`stream state ${state}, layer ${layer}`);
    // The demo page shows it on the stage above the grid.
    const onStage = b.stage.find((t) => t.of === ids.P1);
    if (b.stageHidden !== false || !onStage || onStage.tracks[0] !== b.screen[0].trackId || onStage.width !== 1280) {
      throw new Error(`stage ${JSON.stringify({ hidden: b.stageHidden, tiles: b.stage })}`);
    }
    return `screen ${width}x${height} at ${fps.toFixed(1)} fps, camera at ${camFps.toFixed(1)} fps`;
  });

  await check('stopScreenShare() takes the screen off P2 and leaves the camera', async () => {
    const stoppedAt = Date.now();
    const stopped = await inPage(p1, () => window.sfuDemo.client.stopScreenShare());
    if (!stopped) throw new Error('stopScreenShare() says nothing was shared');
    let r;
    await until(MEDIA_TIMEOUT_MS, async () => {
      r = await inPage(p2, received, ids.P1);
      const gone = r.screen.length === 0 && !Object.values(r.sources).includes('screen') && r.stageHidden === true;
      return gone ? { ok: true } : { ok: false, why: JSON.stringify(r) };
    });
    const events = await inPage(p1, () => ({ events: window.screenEvents, sharing: window.sfuDemo.client.screenSharing }));
    if (JSON.stringify(events) !== '{"events":[true,false],"sharing":false}') throw new Error(`P1: ${JSON.stringify(events)}`);
    if (r.camera.length !== 1) throw new Error(`camera ${JSON.stringify(r.camera)}`);
    return `gone from P2 ${Date.now() - stoppedAt} ms after stopScreenShare()`;
  });
}

// ---- main -------------------------------------------------------------------------------------

/** On a failure: what each page receives from the other. */
async function pageState(peer) {
  const other = peers.find((p) => p !== peer);
  const id = await inPage(other, () => window.sfuDemo.client.participantId).catch(() => null);
  return inPage(peer, received, id);
}

script.run({ scenario, pageState });
