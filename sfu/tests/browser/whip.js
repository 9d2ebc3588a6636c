#!/usr/bin/env node
// End-to-end test of WHIP ingest and WHEP playback with Chromium as the third-party client: a
// plain page of another origin (no SDK, only `fetch` and `RTCPeerConnection`, as any WHIP
// encoder page does) publishes a canvas and an oscillator with `POST /whip`; a participant
// joined through the demo page decodes that video; another plain page plays the publisher with
// `POST /whep/{identity}` and decodes its video and audio; `DELETE` on the WHIP session makes the
// publisher leave the room. Then GStreamer's own WebRTC stack (webrtcbin, driven by
// gst-whip.py) publishes a test pattern with WHIP, the participant decodes it, and the encoder's
// DELETE takes it out of the room again. The codecs negotiated each way are printed.
//
// Run it inside a private network namespace where only `lo` exists (see run.sh):
//   SFU_BIN=target/release/sfu E2E_SCRIPT=whip.js bash sfu/tests/browser/run.sh
//
// Environment:
//   SFU_BIN         the server binary (required)
//   E2E_HTTP_PORT   HTTP/WebSocket port (default 18080)
//   E2E_UDP_PORT    media UDP port (default 40000)
//   CHROMIUM_PATH   browser binary (default /usr/bin/chromium)
//   E2E_VERBOSE=1   stream the server's and the pages' logs instead of printing them on failure
//   RUST_LOG        passed to the server (default info)
//   PYTHON          the Python with GStreamer's bindings for gst-whip.py (default /usr/bin/python3)
'use strict';

const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const harness = require('./harness');

const { withTimeout, spawnLogged, stopGroup } = harness;

const STEP_TIMEOUT_MS = 15_000;
/** From a session's start until video frames decode at the other end. */
const MEDIA_TIMEOUT_MS = 30_000;

const script = harness.browserScript('whip', { room: 'whip', plannedChecks: 9 });
const { config, log, check, until } = script;
const pages = script.pages;

// ---- the server and the pages -----------------------------------------------------------------

/** GStreamer's WHIP encoder (gst-whip.py) and its output. */
let gst = null;
const gstLog = script.tail('gst-whip');
/** The server's origin. The WHIP and WHEP pages come from a web server of their own (this
 * script's, another port), as an encoder or player page elsewhere would: every call they make to
 * the SFU is cross-origin, so CORS counts. */
const serverOrigin = () => `http://127.0.0.1:${config.httpPort}`;
let otherOrigin = null;
let pageServer = null;

/** Serves an empty page on a free loopback port; sets `otherOrigin`. */
async function startPageServer() {
  pageServer = require('node:http').createServer((req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
    res.end('<!doctype html><title>encoder or player</title><body></body>');
  });
  await new Promise((resolve) => pageServer.listen(0, '127.0.0.1', resolve));
  otherOrigin = `http://127.0.0.1:${pageServer.address().port}`;
}

/** A development-mode participant token for the room (fetched here, not by a page). */
async function devToken(name) {
  const url = `${serverOrigin()}/api/dev/token?room=${config.room}&name=${name}`;
  const r = await harness.httpGet(url, 5000);
  if (r.status !== 200) throw new Error(`GET /api/dev/token: ${r.status} ${r.body}`);
  return JSON.parse(r.body);
}

// ---- in the pages -----------------------------------------------------------------------------

/**
 * In a plain page: publishes a moving canvas and a tone with WHIP, as an encoder page would.
 * Keeps the session in `window.whip`.
 */
async function publishWithWhip([origin, token]) {
  const canvas = Object.assign(document.createElement('canvas'), { width: 640, height: 360 });
  document.body.append(canvas);
  const g = canvas.getContext('2d');
  let frame = 0;
  setInterval(() => {
    frame++;
    g.fillStyle = `hsl(${(frame * 7) % 360} 70% 45%)`;
    g.fillRect(0, 0, 640, 360);
    g.fillStyle = '#fff';
    g.font = '48px sans-serif';
    g.fillText(`WHIP ${frame}`, 40 + (frame % 200), 180);
  }, 33);
  const video = canvas.captureStream(30).getVideoTracks()[0];
  const audioContext = new AudioContext();
  const tone = audioContext.createOscillator();
  const sink = audioContext.createMediaStreamDestination();
  tone.connect(sink);
  tone.start();
  const audio = sink.stream.getAudioTracks()[0];

  const pc = new RTCPeerConnection();
  pc.addTransceiver(audio, { direction: 'sendonly' });
  pc.addTransceiver(video, { direction: 'sendonly' });
  await pc.setLocalDescription(await pc.createOffer());
  // No trickle: wait for the candidates (loopback only, quick) and send them in the offer.
  await new Promise((resolve) => {
    if (pc.iceGatheringState === 'complete') return resolve();
    pc.addEventListener('icegatheringstatechange', () => pc.iceGatheringState === 'complete' && resolve());
    setTimeout(resolve, 3000);
  });
  const started = performance.now();
  const response = await fetch(`${origin}/whip`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/sdp', Authorization: `Bearer ${token}` },
    body: pc.localDescription.sdp,
  });
  const answer = await response.text();
  if (response.status !== 201) throw new Error(`POST /whip: ${response.status} ${answer}`);
  const location = response.headers.get('Location');
  if (!location) throw new Error('POST /whip: no Location (is it exposed by CORS?)');
  await pc.setRemoteDescription({ type: 'answer', sdp: answer });
  window.whip = { pc, location: new URL(location, origin).href, answeredMs: performance.now() - started };
  return { location, etag: response.headers.get('ETag'), answeredMs: Math.round(window.whip.answeredMs) };
}

/** In a plain page: plays one participant with WHEP. Keeps the session in `window.whep`. */
async function playWithWhep([origin, token, identity]) {
  const pc = new RTCPeerConnection();
  pc.addTransceiver('audio', { direction: 'recvonly' });
  pc.addTransceiver('video', { direction: 'recvonly' });
  const video = Object.assign(document.createElement('video'), { autoplay: true, muted: true, playsInline: true });
  document.body.append(video);
  const stream = new MediaStream();
  pc.ontrack = (e) => {
    stream.addTrack(e.track);
    video.srcObject = stream;
  };
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((resolve) => {
    if (pc.iceGatheringState === 'complete') return resolve();
    pc.addEventListener('icegatheringstatechange', () => pc.iceGatheringState === 'complete' && resolve());
    setTimeout(resolve, 3000);
  });
  const started = performance.now();
  const response = await fetch(`${origin}/whep/${encodeURIComponent(identity)}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/sdp', Authorization: `Bearer ${token}` },
    body: pc.localDescription.sdp,
  });
  const answer = await response.text();
  if (response.status !== 201) throw new Error(`POST /whep: ${response.status} ${answer}`);
  await pc.setRemoteDescription({ type: 'answer', sdp: answer });
  window.whep = { pc, started };
  return { location: response.headers.get('Location'), answeredMs: Math.round(performance.now() - started) };
}

/** In a page with a peer connection at `window[key].pc`: what it sends and receives, with codecs. */
async function rtpInPage(key) {
  const pc = window[key]?.pc ?? window.sfuDemo?.client?.pc;
  if (!pc) return null;
  const stats = await pc.getStats();
  const codec = (id) => {
    const c = id ? stats.get(id) : null;
    return c ? `${c.mimeType}${c.sdpFmtpLine ? ` (${c.sdpFmtpLine})` : ''}` : null;
  };
  const out = { connection: pc.connectionState, inbound: [], outbound: [] };
  stats.forEach((s) => {
    if (s.type === 'inbound-rtp') {
      out.inbound.push({
        kind: s.kind,
        track: s.trackIdentifier,
        packets: s.packetsReceived ?? 0,
        framesDecoded: s.framesDecoded ?? 0,
        width: s.frameWidth ?? 0,
        codec: codec(s.codecId),
      });
    }
    if (s.type === 'outbound-rtp') {
      out.outbound.push({ kind: s.kind, packets: s.packetsSent ?? 0, codec: codec(s.codecId) });
    }
  });
  return out;
}

/** In the demo page: the participants as the client sees them. */
function participantsInDemo() {
  const { client } = window.sfuDemo;
  return {
    state: client.state,
    participants: [...client.participants].map(([id, p]) => ({
      id,
      name: p.name,
      videoTracks: p.stream.getVideoTracks().map((t) => t.id),
    })),
  };
}

const rtp = (entry, key) => withTimeout(entry.page.evaluate(rtpInPage, key), 5000, `${entry.name} stats`);

/** Waits until `entry` decodes video on `key`'s connection (frames rising), optionally only on `trackIds`. */
async function decodesVideo(entry, key, trackIds = null) {
  let last = null;
  let seen = null;
  await until(MEDIA_TIMEOUT_MS, async () => {
    const s = await rtp(entry, key);
    const v = s?.inbound.filter((i) => i.kind === 'video' && (!trackIds || trackIds.includes(i.track)));
    const frames = (v ?? []).reduce((n, i) => n + i.framesDecoded, 0);
    const rising = last !== null && frames > last && v.some((i) => i.width > 0);
    last = frames;
    seen = s;
    return rising ? { ok: true } : { ok: false, why: `${entry.name}: ${JSON.stringify(s)}` };
  }, 1000);
  return seen;
}

// ---- the scenario -----------------------------------------------------------------------------

async function scenario() {
  if (!config.sfuBin || !fs.existsSync(config.sfuBin)) throw new Error(`SFU_BIN=${config.sfuBin} does not exist`);
  if (!fs.existsSync(config.chromiumPath)) throw new Error(`no browser at ${config.chromiumPath} (set CHROMIUM_PATH)`);
  script.startServer();
  await startPageServer();
  await script.checkHealth();

  const [encoder, viewer, player] = await Promise.all(
    ['encoder', 'viewer', 'player'].map((name) => script.launchPage(name, { viewport: { width: 960, height: 600 } })),
  );

  // The viewer is in the room first, through the demo page and the WebSocket protocol.
  await check('a participant joins through the demo page', async () => {
    await viewer.page.goto(`${serverOrigin()}/?room=${config.room}&name=viewer&autojoin=1`, { timeout: STEP_TIMEOUT_MS });
    await until(STEP_TIMEOUT_MS, async () => {
      const s = await viewer.page.evaluate(participantsInDemo);
      return s.state === 'joined' ? { ok: true } : { ok: false, why: s.state };
    });
  });

  let whip;
  let identity;
  await check('a plain page of another origin publishes with POST /whip (CORS)', async () => {
    // It only runs fetch and RTCPeerConnection.
    await encoder.page.goto(`${otherOrigin}/encoder`, { timeout: STEP_TIMEOUT_MS });
    const token = await devToken('Encoder');
    identity = token.identity;
    whip = await withTimeout(encoder.page.evaluate(publishWithWhip, [serverOrigin(), token.token]), STEP_TIMEOUT_MS, 'WHIP publish');
    if (!/^\/whip\/[A-Za-z0-9]{22}$/.test(whip.location)) throw new Error(`Location ${whip.location}`);
    return `201 in ${whip.answeredMs} ms, Location ${whip.location}, ETag ${whip.etag}`;
  });

  await check("the demo page's participant decodes the WHIP publisher's video", async () => {
    let tracks = null;
    await until(MEDIA_TIMEOUT_MS, async () => {
      const s = await viewer.page.evaluate(participantsInDemo);
      const p = s.participants.find((x) => x.name === 'Encoder');
      tracks = p?.videoTracks?.length ? p.videoTracks : null;
      return tracks ? { ok: true } : { ok: false, why: JSON.stringify(s) };
    });
    const s = await decodesVideo(viewer, 'sfuDemo', tracks);
    const sent = (await rtp(encoder, 'whip')).outbound.filter((o) => o.packets > 0);
    const v = s.inbound.find((i) => i.kind === 'video' && tracks.includes(i.track));
    log(`encoder sends ${sent.map((o) => `${o.kind} ${o.codec}`).join(', ')}`);
    log(`viewer decodes ${v.codec} at width ${v.width}`);
    return `${v.codec}, ${v.framesDecoded} frames`;
  });

  await check('a plain page plays the publisher with POST /whep/{identity}', async () => {
    await player.page.goto(`${otherOrigin}/player`, { timeout: STEP_TIMEOUT_MS });
    const token = await devToken('Player');
    const whep = await withTimeout(
      player.page.evaluate(playWithWhep, [serverOrigin(), token.token, identity]),
      STEP_TIMEOUT_MS,
      'WHEP play',
    );
    if (!/^\/whep\/resource\/[A-Za-z0-9]{22}$/.test(whep.location ?? '')) throw new Error(`Location ${whep.location}`);
    return `201 in ${whep.answeredMs} ms, Location ${whep.location}`;
  });

  await check('the WHEP player decodes the video and receives the audio', async () => {
    const started = Date.now();
    const s = await decodesVideo(player, 'whep');
    await until(STEP_TIMEOUT_MS, async () => {
      const a = (await rtp(player, 'whep')).inbound.find((i) => i.kind === 'audio');
      return a?.packets > 0 ? { ok: true } : { ok: false, why: JSON.stringify(a ?? null) };
    });
    const got = (await rtp(player, 'whep')).inbound.map((i) => `${i.kind} ${i.codec}`);
    log(`player receives ${got.join(', ')}`);
    return `${got.join(', ')}; video decoding ${Date.now() - started} ms after the answer was applied`;
  });

  await check('DELETE on the WHIP session makes the publisher leave the room', async () => {
    const status = await encoder.page.evaluate(async () => {
      const r = await fetch(window.whip.location, { method: 'DELETE' });
      window.whip.pc.close();
      return r.status;
    });
    if (status !== 204) throw new Error(`DELETE: ${status}`);
    await until(STEP_TIMEOUT_MS, async () => {
      const s = await viewer.page.evaluate(participantsInDemo);
      const still = s.participants.some((x) => x.name === 'Encoder');
      return still ? { ok: false, why: JSON.stringify(s) } : { ok: true };
    });
    const again = await encoder.page.evaluate(async () => (await fetch(window.whip.location, { method: 'DELETE' })).status);
    if (again !== 404) throw new Error(`a second DELETE answered ${again}, not 404`);
  });

  await check("GStreamer's webrtcbin publishes with WHIP and the demo page's participant decodes it", async () => {
    // libnice (GStreamer's ICE) gathers no loopback candidates, and this namespace has only
    // `lo`: give it an address of its own on a veth pair (the server stays on 127.0.0.1).
    const ip = (...a) => execFileSync('ip', a, { stdio: 'pipe' });
    if (!fs.existsSync('/sys/class/net/gst0')) {
      ip('link', 'add', 'gst0', 'type', 'veth', 'peer', 'name', 'gst1');
      ip('addr', 'add', '10.99.0.1/24', 'dev', 'gst0');
      ip('link', 'set', 'gst0', 'up');
      ip('link', 'set', 'gst1', 'up');
    }
    const token = await devToken('GStreamer');
    const python = process.env.PYTHON || '/usr/bin/python3';
    const gstScript = path.join(__dirname, 'gst-whip.py');
    gst = spawnLogged(python, [gstScript, '--url', `${serverOrigin()}/whip`, '--token', token.token, '--seconds', '90'], process.env, gstLog);
    let exit = null;
    gst.exited.then((e) => (exit = e));
    let tracks = null;
    await until(MEDIA_TIMEOUT_MS, async () => {
      if (exit) return { ok: false, stop: true, why: `gst-whip.py exited (code ${exit.code}): ${gstLog.lines.slice(-3).join(' | ')}` };
      const s = await viewer.page.evaluate(participantsInDemo);
      const p = s.participants.find((x) => x.name === 'GStreamer');
      tracks = p?.videoTracks?.length ? p.videoTracks : null;
      return tracks ? { ok: true } : { ok: false, why: JSON.stringify(s) };
    });
    const s = await decodesVideo(viewer, 'sfuDemo', tracks);
    const v = s.inbound.find((i) => i.kind === 'video' && tracks.includes(i.track));
    log(`viewer decodes GStreamer's ${v.codec} at width ${v.width}`);
    if (v.width !== 640) throw new Error(`decodes ${v.width} wide, not GStreamer's 640`);
    return `${v.codec} ${v.width} wide, ${v.framesDecoded} frames; ${gstLog.lines.filter((l) => l.startsWith('gst-whip:')).join('; ')}`;
  });

  await check('GStreamer ends its session with DELETE and leaves the room', async () => {
    await stopGroup(gst);
    if (!gstLog.lines.some((l) => l === 'gst-whip: DELETE 204')) {
      throw new Error(`no DELETE 204 from gst-whip.py: ${gstLog.lines.slice(-5).join(' | ')}`);
    }
    await until(STEP_TIMEOUT_MS, async () => {
      const s = await viewer.page.evaluate(participantsInDemo);
      return s.participants.some((x) => x.name === 'GStreamer') ? { ok: false, why: JSON.stringify(s) } : { ok: true };
    });
  });
}

// ---- main -------------------------------------------------------------------------------------

/** The page's own RTP statistics: the demo client's in the viewer, the WHIP or WHEP client's. */
const pageState = (entry) => rtp(entry, entry.name === 'viewer' ? 'sfuDemo' : entry.name === 'encoder' ? 'whip' : 'whep');

script.run({
  scenario,
  pageState,
  logs: [gstLog],
  shutdown: async () => {
    await stopGroup(gst);
    pageServer?.close();
  },
});
