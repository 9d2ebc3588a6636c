#!/usr/bin/env python3
"""A WHIP encoder made of GStreamer's own WebRTC stack (webrtcbin): publishes a moving test
pattern (VP8, 640x360) and a tone (Opus) with `POST URL`, until SIGTERM or --seconds, then ends
the session with `DELETE` on its Location.

webrtcbin (GStreamer 1.22) makes an RSA DTLS certificate, which the server's DTLS does not take
(it takes ECDSA, as browsers, OBS and libwebrtc make). So the script gives webrtcbin's DTLS
elements an ECDSA certificate as they are created, and writes that certificate's fingerprint into
the offer in place of the one webrtcbin computed for its own.

    python3 gst-whip.py --url http://127.0.0.1:8080/whip --token TOKEN [--seconds 30]

Needs python3-gi and Debian's GStreamer packages (gir1.2-gst-plugins-bad-1.0,
gstreamer1.0-plugins-{base,good,bad}, gstreamer1.0-nice) and openssl.
"""
import argparse
import signal
import subprocess
import sys
import tempfile
import urllib.request
import urllib.error

import gi

gi.require_version('Gst', '1.0')
gi.require_version('GstWebRTC', '1.0')
gi.require_version('GstSdp', '1.0')
from gi.repository import GLib, Gst, GstSdp, GstWebRTC  # noqa: E402


def ecdsa_pem():
    """A fresh ECDSA P-256 certificate and key (PEM), and the certificate's SHA-256 fingerprint."""
    with tempfile.TemporaryDirectory() as d:
        subprocess.run(['openssl', 'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1',
                        '-nodes', '-keyout', f'{d}/k.pem', '-out', f'{d}/c.pem', '-days', '2', '-subj', '/CN=gst-whip'],
                       check=True, capture_output=True)
        fp = subprocess.run(['openssl', 'x509', '-in', f'{d}/c.pem', '-noout', '-fingerprint', '-sha256'],
                            check=True, capture_output=True, text=True).stdout.strip().split('=', 1)[1]
        return open(f'{d}/c.pem').read() + open(f'{d}/k.pem').read(), fp


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--url', required=True)
    ap.add_argument('--token', required=True)
    ap.add_argument('--seconds', type=float, default=20)

    args = ap.parse_args()
    Gst.init(None)
    pipeline = Gst.parse_launch(
        'webrtcbin name=w bundle-policy=max-bundle '
        'videotestsrc is-live=true pattern=ball ! video/x-raw,width=640,height=360,framerate=30/1 ! videoconvert ! queue ! '
        'vp8enc deadline=1 target-bitrate=600000 keyframe-max-dist=60 ! rtpvp8pay pt=96 picture-id-mode=15-bit ! queue ! '
        'application/x-rtp,media=video,encoding-name=VP8,payload=96,clock-rate=90000 ! w. '
        'audiotestsrc is-live=true wave=sine ! audioconvert ! audioresample ! queue ! opusenc ! rtpopuspay pt=111 ! queue ! '
        'application/x-rtp,media=audio,encoding-name=OPUS,payload=111,clock-rate=48000 ! w. ')
    w = pipeline.get_by_name('w')
    loop = GLib.MainLoop()
    pem, fingerprint = ecdsa_pem()
    state = {'location': None}

    def set_pem():
        it = w.iterate_recurse()
        n = 0
        while True:
            ok, e = it.next()
            if ok != Gst.IteratorResult.OK:
                break
            if e.get_factory() and e.get_factory().get_name() in ('dtlssrtpdec', 'dtlsdec'):
                e.set_property('pem', pem)
                n += 1
        return n

    def on_element(_bin, _sub, e):
        if e.get_factory() and e.get_factory().get_name() in ('dtlssrtpdec', 'dtlsdec'):
            e.set_property('pem', pem)
            print(f'gst-whip: ECDSA certificate on {e.get_name()}', flush=True)

    w.connect('deep-element-added', on_element)

    def on_gathered():
        offer = w.get_property('local-description').sdp.as_text()
        offer = '\r\n'.join(f'a=fingerprint:sha-256 {fingerprint}' if l.startswith('a=fingerprint:') else l
                              for l in offer.split('\r\n'))
        req = urllib.request.Request(args.url, data=offer.encode(), method='POST',
                                     headers={'Content-Type': 'application/sdp', 'Authorization': f'Bearer {args.token}'})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                state['location'] = r.headers.get('Location')
                answer = r.read().decode()
                print(f'gst-whip: {r.status} {state["location"]}', flush=True)
        except urllib.error.HTTPError as e:
            print(f'gst-whip: {e.code} {e.read().decode()[:300]}', flush=True)
            loop.quit()
            return
        _, sdp = GstSdp.SDPMessage.new_from_text(answer)
        desc = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.ANSWER, sdp)
        w.emit('set-remote-description', desc, Gst.Promise.new())

    def on_gathering(*_):
        if w.get_property('ice-gathering-state') == GstWebRTC.WebRTCICEGatheringState.COMPLETE:
            GLib.idle_add(lambda: (on_gathered(), False)[1])

    def on_offer(promise):
        reply = promise.get_reply()
        offer = reply.get_value('offer')
        w.emit('set-local-description', offer, Gst.Promise.new())

    def on_negotiation_needed(*_):
        w.emit('create-offer', None, Gst.Promise.new_with_change_func(on_offer))

    w.connect('on-negotiation-needed', on_negotiation_needed)
    w.connect('notify::ice-gathering-state', on_gathering)
    w.connect('notify::connection-state', lambda *_: print('gst-whip: connection', w.get_property('connection-state').value_nick, flush=True))
    pipeline.set_state(Gst.State.PLAYING)
    GLib.timeout_add(int(args.seconds * 1000), loop.quit)
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, lambda: (loop.quit(), False)[1])
    loop.run()
    if state['location']:
        base = args.url.split('/whip')[0]
        req = urllib.request.Request(base + state['location'] if state['location'].startswith('/') else state['location'],
                                     method='DELETE', headers={'Authorization': f'Bearer {args.token}'})
        with urllib.request.urlopen(req, timeout=5) as r:
            print(f'gst-whip: DELETE {r.status}', flush=True)
    pipeline.set_state(Gst.State.NULL)


if __name__ == '__main__':
    main()
