#!/usr/bin/env node
// End-to-end test of the video codec choice: two headless Chromium pages join one room through
// the demo page. P1 asks for H.264 (`?codec=h264`: the client puts H.264 first with
// setCodecPreferences, VP8 still listed after it); P2 keeps Chromium's own order (VP8 first).
// The server must answer P1 in its order, so that P1 sends H.264 and P2 decodes `video/H264`
// (its offer for P1's video carrying H.264 alone); the other way round P2's VP8 must reach P1.
// The codecs negotiated in each direction are printed, with their fmtp lines.
//
// Run it inside a private network namespace where only `lo` exists (see run.sh):
//   SFU_BIN=target/release/sfu E2E_SCRIPT=codec.js bash sfu/tests/browser/run.sh
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

const script = harness.browserScript('codec', { room: 'codecs', plannedChecks: 7 });
const { config, log, check, until } = script;
const peers = script.pages;

// ---- the pages --------------------------------------------------------------------------------

function pageUrl(peer) {
  return `http://127.0.0.1:${config.httpPort}/?room=${config.room}&name=${peer.name}&autojoin=1${peer.query}`;
}

/**
 * In the page: its own video m-line in its local and remote descriptions (codecs in `m=` line
 * order), what it sends, and per remote participant the inbound video with its codec and the
 * codecs of the m-line it arrives on; its outbound audio and, per remote participant, the inbound
 * audio with their codecs.
 */
async function codecsInPage() {
  const { client } = window.sfuDemo;
  const out = { state: client.state, id: client.participantId, own: null, outbound: [], audioOut: [], remotes: {} };
  const pc = client.pc;
  if (!pc) return out;
  const section = (sdp, mid) => {
    if (!sdp || mid == null) return null;
    const parts = sdp.split(/\r\n(?=m=)/);
    const s = parts.find((p) => p.startsWith('m=') && p.includes(`\r\na=mid:${mid}\r\n`));
    if (!s) return null;
    const lines = s.split('\r\n');
    const pts = lines[0].split(' ').slice(3);
    const names = pts
      .map((pt) => {
        const map = lines.find((l) => l.startsWith(`a=rtpmap:${pt} `));
        const fmtp = lines.find((l) => l.startsWith(`a=fmtp:${pt} `));
        const name = map ? map.split(' ')[1].split('/')[0] : '?';
        return { pt, name, fmtp: fmtp ? fmtp.slice(fmtp.indexOf(' ') + 1) : '' };
      })
      .filter((c) => c.name.toLowerCase() !== 'rtx');
    return names;
  };
  const own = pc.getTransceivers().find((t) => t.sender.track?.kind === 'video');
  if (own) {
    out.own = {
      mid: own.mid,
      local: section(pc.currentLocalDescription?.sdp, own.mid),
      remote: section(pc.currentRemoteDescription?.sdp, own.mid),
      remoteType: pc.currentRemoteDescription?.type ?? null,
    };
  }
  const stats = await pc.getStats();
  const codec = (id) => {
    const c = id ? stats.get(id) : null;
    return c ? { mimeType: c.mimeType, fmtp: c.sdpFmtpLine ?? '', payloadType: c.payloadType } : null;
  };
  const inbound = new Map();
  const inboundAudio = new Map();
  stats.forEach((s) => {
    if (s.type === 'outbound-rtp' && s.kind === 'audio') {
      out.audioOut.push({ packetsSent: s.packetsSent ?? 0, codec: codec(s.codecId) });
    }
    if (s.type === 'inbound-rtp' && s.kind === 'audio') inboundAudio.set(s.trackIdentifier, s);
    if (s.type === 'outbound-rtp' && s.kind === 'video') {
      out.outbound.push({ rid: s.rid ?? null, framesEncoded: s.framesEncoded ?? 0, codec: codec(s.codecId) });
    }
    if (s.type === 'inbound-rtp' && s.kind === 'video') inbound.set(s.trackIdentifier, s);
  });
  for (const [id, p] of client.participants) {
    const video = [];
    for (const t of p.stream.getVideoTracks()) {
      const s = inbound.get(t.id);
      if (!s) continue;
      const tr = pc.getTransceivers().find((x) => x.receiver.track === t);
      video.push({
        framesDecoded: s.framesDecoded ?? 0,
        width: s.frameWidth ?? 0,
        height: s.frameHeight ?? 0,
        codec: codec(s.codecId),
        offered: tr ? section(pc.currentRemoteDescription?.sdp, tr.mid) : null,
      });
    }
    const audio = p.stream
      .getAudioTracks()
      .map((t) => inboundAudio.get(t.id))
      .filter(Boolean)
      .map((s) => ({ packetsReceived: s.packetsReceived ?? 0, codec: codec(s.codecId) }));
    out.remotes[id] = { name: p.name, video, audio };
  }
  return out;
}

const snapshot = (peer) => withTimeout(peer.page.evaluate(codecsInPage), 5000, `${peer.name} snapshot`);
const show = (c) => (c ? `${c.mimeType}${c.fmtp ? ` (${c.fmtp})` : ''}` : 'none');
const listed = (codecs) => (codecs ?? []).map((c) => (c.name === 'H264' ? `H264[${c.fmtp}]` : c.name)).join(', ');

/** Waits until `viewer` decodes video from `from` (frames rising between two samples). */
async function decodes(viewer, from) {
  let last = null;
  let seen = null;
  await until(MEDIA_TIMEOUT_MS, async () => {
    const s = await snapshot(viewer);
    const v = s.remotes[from]?.video?.[0];
    const rising = v && last && v.framesDecoded > last.framesDecoded && v.width > 0;
    last = v ?? null;
    seen = v;
    return rising ? { ok: true } : { ok: false, why: `${viewer.name} from ${from}: ${JSON.stringify(v ?? null)}` };
  }, 1000);
  return seen;
}

// ---- the scenario -----------------------------------------------------------------------------

async function scenario() {
  if (!config.sfuBin || !fs.existsSync(config.sfuBin)) throw new Error(`SFU_BIN=${config.sfuBin} does not exist`);
  if (!fs.existsSync(config.chromiumPath)) throw new Error(`no browser at ${config.chromiumPath} (set CHROMIUM_PATH)`);
  script.startServer();
  await script.checkHealth();

  const launch = (name, query) => script.launchPage(name, { fields: { query } });
  const [p1, p2] = await Promise.all([launch('P1', '&codec=h264'), launch('P2', '')]);

  await check('Chromium can send H.264 and VP8', async () => {
    await p1.page.goto(`http://127.0.0.1:${config.httpPort}/`, { timeout: JOIN_TIMEOUT_MS });
    const caps = await p1.page.evaluate(() =>
      RTCRtpSender.getCapabilities('video').codecs.map((c) => `${c.mimeType} ${c.sdpFmtpLine ?? ''}`.trim()),
    );
    const has = (m) => caps.some((c) => c.toLowerCase().startsWith(m));
    if (!has('video/h264') || !has('video/vp8')) throw new Error(`sender codecs: ${caps.join('; ')}`);
    return caps.filter((c) => !/rtx|red|ulpfec/i.test(c)).join('; ');
  });

  let ids = {};
  await check('both pages join', async () => {
    ids = await script.joinPages(pageUrl, snapshot, JOIN_TIMEOUT_MS);
    return `P1 ${ids.P1}, P2 ${ids.P2}`;
  });

  // By now P1 has answered the server's offer that brought P2's tracks: its descriptions are
  // that offer (which lists P1's own video m-line again) and P1's answer to it.
  await check('P1 lists H.264 first with VP8 after it, and the server keeps that order', async () => {
    let s;
    await until(MEDIA_TIMEOUT_MS, async () => {
      s = await snapshot(p1);
      const ready = s.own?.remote?.length && s.own.remoteType === 'offer';
      return ready ? { ok: true } : { ok: false, why: JSON.stringify(s.own) };
    });
    const local = s.own.local.map((c) => c.name);
    const remote = s.own.remote.map((c) => c.name);
    if (local[0] !== 'H264' || !local.includes('VP8')) throw new Error(`P1 lists ${listed(s.own.local)}`);
    if (remote[0] !== 'H264' || !remote.includes('VP8')) throw new Error(`the server lists ${listed(s.own.remote)}`);
    log(`P1's description of its video: ${listed(s.own.local)}`);
    log(`the server's offer, for P1's video: ${listed(s.own.remote)}`);
    return `server lists ${remote.join(', ')} for P1's video`;
  });

  await check('P1 sends H.264 and P2 decodes video/H264 (offered H.264 alone)', async () => {
    const v = await decodes(p2, ids.P1);
    const sent = (await snapshot(p1)).outbound.filter((o) => o.framesEncoded > 0);
    const sentCodecs = [...new Set(sent.map((o) => show(o.codec)))];
    if (!sent.length || !sent.every((o) => o.codec?.mimeType === 'video/H264')) {
      throw new Error(`P1 sends ${sentCodecs.join(', ') || 'nothing'}`);
    }
    if (v.codec?.mimeType !== 'video/H264') throw new Error(`P2 decodes ${show(v.codec)}`);
    if (!v.offered || v.offered.length !== 1 || v.offered[0].name !== 'H264') {
      throw new Error(`P2 was offered ${listed(v.offered)} for P1's video`);
    }
    const profile = (f) => /profile-level-id=([0-9a-f]+)/i.exec(f)?.[1];
    const mode = (f) => /packetization-mode=(\d)/.exec(f)?.[1];
    if (profile(v.codec.fmtp) !== profile(sent[0].codec.fmtp) || mode(v.codec.fmtp) !== mode(sent[0].codec.fmtp)) {
      throw new Error(`P1 sends ${show(sent[0].codec)} but P2 decodes ${show(v.codec)}`);
    }
    log(`P1 -> P2: P1 sends ${sentCodecs.join(', ')} on ${sent.length} layer(s); P2 decodes ${show(v.codec)} at ${v.width}x${v.height}`);
    return `${show(v.codec)}, ${v.width}x${v.height}`;
  });

  await check('P1 sends its microphone as Opus with RED, P2 receives plain Opus on a clean link', async () => {
    // Chromium reports opus+red as audio/opus in its statistics: the server's counters say what
    // arrived and what it sent on.
    const counter = async (name) => {
      const res = await fetch(`http://127.0.0.1:${config.httpPort}/metrics`, { signal: AbortSignal.timeout(2000) });
      const text = await res.text();
      return text
        .split('\n')
        .filter((l) => l.startsWith(name))
        .reduce((sum, l) => sum + Number(l.trim().split(/\s+/).pop() || 0), 0);
    };
    let last = null;
    let seen = null;
    await until(MEDIA_TIMEOUT_MS, async () => {
      const [s2, redIn, stripped, forwarded] = await Promise.all([
        snapshot(p2),
        counter('sfu_red_packets_in_total'),
        counter('sfu_red_packets_stripped_total'),
        counter('sfu_red_packets_forwarded_total'),
      ]);
      const got = s2.remotes[ids.P1]?.audio?.[0];
      const rising = got && last && got.packetsReceived > last.packetsReceived;
      last = got ?? null;
      seen = { redIn, stripped, forwarded, got: got ? show(got.codec) : 'nothing', packets: got?.packetsReceived ?? 0 };
      const ok = rising && redIn > 50 && stripped > 50 && forwarded === 0 && got.codec?.mimeType === 'audio/opus';
      return ok ? { ok: true } : { ok: false, why: JSON.stringify(seen) };
    }, 1000);
    log(`audio P1 -> P2: ${seen.redIn} RED packets in, ${seen.stripped} sent on as plain Opus, ${seen.forwarded} as RED; P2 receives ${seen.got}`);
    return `${seen.redIn} RED packets in, ${seen.stripped} stripped, ${seen.forwarded} forwarded as RED; P2 receives ${seen.got}`;
  });

  await check('P2 sends in its own order (VP8) and P1 decodes it', async () => {
    const v = await decodes(p1, ids.P2);
    const sent = (await snapshot(p2)).outbound.filter((o) => o.framesEncoded > 0);
    const sentCodecs = [...new Set(sent.map((o) => show(o.codec)))];
    if (v.codec?.mimeType !== 'video/VP8') throw new Error(`P1 decodes ${show(v.codec)} from P2`);
    log(`P2 -> P1: P2 sends ${sentCodecs.join(', ')}; P1 decodes ${show(v.codec)} at ${v.width}x${v.height}; offered ${listed(v.offered)}`);
    return `${show(v.codec)}, ${v.width}x${v.height}`;
  });
}

// ---- main -------------------------------------------------------------------------------------

script.run({ scenario, pageState: snapshot });
