//! Readiness signalling threaded through the component tree.
//!
//! Everything below [`Rtc`][crate::Rtc] forms a tree, and both events and new
//! timeouts bubble up from the leaves. To avoid re-walking a quiescent tree on
//! every `poll_output`, each path that takes `&mut` access to a sub-component
//! is handed an armed [`Wake`] guard, threaded down like `&mut` state.
//!
//! A [`Wake`] defaults to re-polling *everything*: left untouched it signals
//! both a pending event drain and a timeout recompute. A component narrows it
//! locally — [`Wake::no_events`] / [`Wake::no_timeout`] — when it knows less
//! changed. The guard folds its (possibly narrowed) signal into the owning
//! [`Readiness`] on drop.
//!
//! The direction is deliberate: the safe default is to re-poll, and narrowing
//! is an opt-in optimization owned by the component that performed the
//! mutation. A forgotten narrowing or an over-broad wake costs at most one redundant
//! poll; it can never drop output. No component names another's scope, and
//! `Rtc` holds no knowledge of which mutation affects what.
//!
//! The app-facing API wrappers ([`DirectApi`][crate::change::DirectApi],
//! [`SdpApi`][crate::change::SdpApi], [`Channel`][crate::channel::Channel],
//! [`Bwe`][crate::bwe::Bwe]) hold an [`RtcMut`] instead of `&mut Rtc`. It arms
//! the readiness on *mutable* deref only, so a `&mut self` method that mutates
//! re-polls the tree while a `&self` reader never does — and neither has to
//! remember to call anything.

use std::ops::{Deref, DerefMut};

use crate::Rtc;

/// A `&mut Rtc` handle that re-polls the tree when it is used mutably.
///
/// Change detection, à la a dirty-flag on mutable access: `deref` is a plain
/// read and never arms; `deref_mut` arms both halves (the safe default).
/// Because a `&self` method can only reach `deref` and a mutating `&mut self`
/// method reaches `deref_mut`, "mutation re-polls, reads don't" is enforced by
/// the borrow checker — a new method can't forget, and a read-only method
/// can't accidentally arm.
///
/// Deliberately has no `Drop`: the API wrappers are held in `let` bindings
/// across other `Rtc` use, and a destructor would extend their borrow to the
/// end of scope. Arming therefore happens eagerly on the mutable access.
///
/// When a mutation only affects one half of the re-poll — and especially when
/// that isn't known until the mutation is underway — take it through
/// [`RtcMut::mutate`] and narrow the returned [`Mutation`] guard.
pub(crate) struct RtcMut<'a> {
    rtc: &'a mut Rtc,
}

impl<'a> RtcMut<'a> {
    pub(crate) fn new(rtc: &'a mut Rtc) -> Self {
        RtcMut { rtc }
    }

    /// Begin a mutation whose re-poll can be narrowed *after the fact*.
    ///
    /// The returned [`Mutation`] derefs to `Rtc`, so mutate through it, then
    /// (optionally, conditionally) call [`Mutation::no_events`] /
    /// [`Mutation::no_timeout`]. It folds its own — per-operation, never shared
    /// — signal into the readiness when it drops.
    ///
    /// Plain `&mut *` (via [`DerefMut`]) is the shorthand for "arm both": it's
    /// what methods that don't narrow, or that return a `&mut` borrowed from
    /// the tree (which can't outlive a guard), use instead.
    pub(crate) fn mutate(&mut self) -> Mutation<'_> {
        Mutation {
            rtc: self.rtc,
            events: true,
            timeout: true,
        }
    }

    /// The connection, for a change that moves timers but queues no event and no datagram:
    /// handing out a send stream to be written (see [`DirectApi::stream_tx`]). What is
    /// written leaves once a timeout or [`Rtc::release_queued`] has stamped it, and either of
    /// those arms what it needs, so the event pipeline is not armed here. A send stream's own
    /// methods (writing, the resend cache's settings, pacing on or off) queue no event.
    ///
    /// [`DirectApi::stream_tx`]: crate::change::DirectApi::stream_tx
    /// [`Rtc::release_queued`]: crate::Rtc::release_queued
    pub(crate) fn for_writing(&mut self) -> &mut Rtc {
        self.rtc.readiness.wake().no_events();
        self.rtc
    }
}

impl Deref for RtcMut<'_> {
    type Target = Rtc;

    fn deref(&self) -> &Rtc {
        self.rtc
    }
}

impl DerefMut for RtcMut<'_> {
    fn deref_mut(&mut self) -> &mut Rtc {
        self.rtc.readiness.wake();
        self.rtc
    }
}

/// A single mutation in progress, obtained from [`RtcMut::mutate`].
///
/// Derefs to `Rtc` for the actual change. Armed for both halves by default;
/// narrow with [`Mutation::no_events`] / [`Mutation::no_timeout`] at any point
/// before it drops — including conditionally, once the mutation has revealed
/// which half it touched. Folds the (possibly narrowed) signal into the
/// readiness on drop.
///
/// The signal is private to this one guard, so narrowing here can never
/// interfere with another method call's decision regardless of call order —
/// the property a long-lived shared guard could not offer.
pub(crate) struct Mutation<'a> {
    rtc: &'a mut Rtc,
    events: bool,
    timeout: bool,
}

impl Mutation<'_> {
    /// Assert this mutation queued no event or transmit.
    pub(crate) fn no_events(&mut self) {
        self.events = false;
    }

    /// Assert this mutation moved no timer.
    pub(crate) fn no_timeout(&mut self) {
        self.timeout = false;
    }
}

impl Deref for Mutation<'_> {
    type Target = Rtc;

    fn deref(&self) -> &Rtc {
        self.rtc
    }
}

impl DerefMut for Mutation<'_> {
    fn deref_mut(&mut self) -> &mut Rtc {
        self.rtc
    }
}

impl Drop for Mutation<'_> {
    fn drop(&mut self) {
        let mut wake = self.rtc.readiness.wake();
        if !self.events {
            wake.no_events();
        }
        if !self.timeout {
            wake.no_timeout();
        }
    }
}

/// The accumulated re-poll signal owned by [`Rtc`][crate::Rtc].
///
/// `poll_output` reads it to decide whether to walk the event pipeline and
/// whether to recompute the next timeout, clearing each half once it has
/// proven that part of the tree quiescent.
#[derive(Debug)]
pub(crate) struct Readiness {
    events: bool,
    timeout: bool,
    /// Since the event pipeline was last found empty only the send path has run (datagrams
    /// polled, queued packets released): the next datagram can be polled without walking the
    /// pipeline again. Any wake that may have queued an event clears it; `events` stays set, so
    /// the pipeline is walked once the send path has nothing more.
    sending: bool,
}

impl Readiness {
    /// A fresh instance must poll the whole tree once.
    pub(crate) fn armed() -> Self {
        Readiness {
            events: true,
            timeout: true,
            sending: false,
        }
    }

    pub(crate) fn wants_events(&self) -> bool {
        self.events
    }

    pub(crate) fn wants_timeout(&self) -> bool {
        self.timeout
    }

    pub(crate) fn clear_events(&mut self) {
        self.events = false;
    }

    pub(crate) fn clear_timeout(&mut self) {
        self.timeout = false;
    }

    /// Whether only the send path has run since the event pipeline was found empty.
    pub(crate) fn only_sending(&self) -> bool {
        self.sending
    }

    /// The send path ran (a datagram left, or queued packets were released) and nothing else
    /// did since the event pipeline was found empty. Re-polls everything, but the next datagram
    /// may be taken before the walk.
    pub(crate) fn sent(&mut self) {
        self.events = true;
        self.timeout = true;
        self.sending = true;
    }

    /// The send path has nothing more: the next poll walks the event pipeline.
    pub(crate) fn stop_sending(&mut self) {
        self.sending = false;
    }

    /// Hand out an armed guard for a mutable descent into the tree.
    pub(crate) fn wake(&mut self) -> Wake<'_> {
        Wake {
            readiness: self,
            events: true,
            timeout: true,
        }
    }
}

/// An armed guard threaded into a component's mutating methods.
///
/// Narrowed locally by the component and folded into [`Readiness`] on drop.
/// See the [module docs][self].
///
/// Dropping it immediately (e.g. `self.rtc.readiness.wake();`) is the
/// conservative default: it re-polls everything. Narrow first to do less.
pub(crate) struct Wake<'a> {
    readiness: &'a mut Readiness,
    events: bool,
    timeout: bool,
}

impl Wake<'_> {
    /// Assert this path queued no event or transmit, so the event pipeline
    /// need not be walked on its behalf.
    pub(crate) fn no_events(&mut self) {
        self.events = false;
    }

    /// Assert this path did not move any timer, so the next timeout need not
    /// be recomputed on its behalf.
    pub(crate) fn no_timeout(&mut self) {
        self.timeout = false;
    }
}

impl Drop for Wake<'_> {
    fn drop(&mut self) {
        self.readiness.events |= self.events;
        self.readiness.timeout |= self.timeout;
        if self.events {
            // This path may have queued an event: it must be seen before more datagrams.
            self.readiness.sending = false;
        }
    }
}

#[cfg(test)]
impl Readiness {
    pub(crate) fn idle() -> Self {
        Self {
            events: false,
            timeout: false,
            sending: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::bwe::Bitrate;
    use crate::crypto::dtls::{KeyingMaterial, SrtpProfile};
    use crate::media::MediaKind;
    use crate::{Input, Output};
    use std::time::Instant;

    fn idle_rtc() -> Rtc {
        let now = Instant::now();
        let mut rtc = Rtc::builder()
            .enable_bwe(Some(Bitrate::kbps(300)))
            .build(now);
        let profile = SrtpProfile::AEAD_AES_128_GCM;
        let mat = KeyingMaterial::new(&vec![0; profile.keying_material_len()]);
        rtc.session
            .set_keying_material(mat, crate::crypto::test_default_provider(), profile, true);
        rtc.direct_api()
            .declare_media("vid".into(), MediaKind::Video);
        rtc.direct_api()
            .declare_stream_tx(42.into(), None, "vid".into(), None);
        rtc.handle_input(Input::Timeout(now)).unwrap();
        while !matches!(rtc.poll_output().unwrap(), Output::Timeout(_)) {}
        assert!(!rtc.readiness.wants_events());
        assert!(!rtc.readiness.wants_timeout());
        rtc
    }

    /// An idle connection with a path to send on (10.0.0.1:5000 to 10.0.0.2:6000).
    fn sending_rtc() -> Rtc {
        let mut rtc = idle_rtc();
        rtc.send_addr = Some(crate::SendAddr {
            proto: crate::net::Protocol::Udp,
            source: "10.0.0.1:5000".parse().unwrap(),
            destination: "10.0.0.2:6000".parse().unwrap(),
        });
        rtc
    }

    #[test]
    fn readiness_bwe_set_bitrate_only_wakes_timeout() {
        let mut rtc = idle_rtc();
        rtc.bwe().set_bitrate(Bitrate::kbps(100), Bitrate::mbps(2));
        assert!(!rtc.readiness.wants_events());
        assert!(rtc.readiness.wants_timeout());
        assert!(
            rtc.session.poll_event().is_none(),
            "no hidden event behind the narrowed flag"
        );
        let expected = rtc.poll_timeout();
        assert!(matches!(rtc.poll_output().unwrap(), Output::Timeout(at) if at == expected));
    }

    #[test]
    fn readiness_bwe_reset_only_wakes_timeout() {
        let mut rtc = idle_rtc();
        rtc.bwe().reset(Bitrate::kbps(900));
        assert!(!rtc.readiness.wants_events());
        assert!(rtc.readiness.wants_timeout());
        assert!(
            rtc.session.poll_event().is_none(),
            "reset produces estimates on a later timeout"
        );
        let expected = rtc.poll_timeout();
        assert!(matches!(rtc.poll_output().unwrap(), Output::Timeout(at) if at == expected));
    }

    #[test]
    fn readiness_outgoing_app_feedback_only_wakes_events() {
        let mut rtc = idle_rtc();
        let before = rtc.session.poll_timeout();
        rtc.direct_api()
            .send_app_specific_feedback(42.into(), 43.into(), vec![1, 2, 3, 4]);
        assert!(rtc.readiness.wants_events());
        assert!(!rtc.readiness.wants_timeout());
        assert_eq!(rtc.session.poll_timeout(), before);
        assert!(
            rtc.session.poll_datagram(rtc.last_now).is_some(),
            "queued feedback must be sendable without a timeout"
        );
    }

    #[test]
    fn readiness_api_narrowing_preserves_other_mutations() {
        for feedback_first in [false, true] {
            let mut rtc = idle_rtc();
            if feedback_first {
                rtc.direct_api()
                    .send_app_specific_feedback(42.into(), 43.into(), vec![1, 2, 3, 4]);
                rtc.bwe().reset(Bitrate::kbps(900));
            } else {
                rtc.bwe().reset(Bitrate::kbps(900));
                rtc.direct_api()
                    .send_app_specific_feedback(42.into(), 43.into(), vec![1, 2, 3, 4]);
            }
            assert!(rtc.readiness.wants_events());
            assert!(rtc.readiness.wants_timeout());
        }
    }

    #[test]
    fn a_burst_leaves_with_the_event_pipeline_walked_before_and_after_it() {
        use crate::media::Pt;
        use crate::streams::RtpWrite;
        use std::time::Duration;

        let mut rtc = sending_rtc();
        let mut now = rtc.last_now;
        let pt: Pt = 96.into();
        let mut seq = 1_u64;
        for round in 0..2 {
            for _ in 0..4 {
                let mut api = rtc.direct_api();
                let tx = api.stream_tx(&42.into()).unwrap();
                tx.write_rtp(RtpWrite::new(pt, seq.into(), 0, now, vec![0; 100]));
                seq += 1;
            }
            now += Duration::from_millis(20);
            if round == 0 {
                rtc.handle_input(Input::Timeout(now)).unwrap();
            } else {
                rtc.release_queued(now).unwrap();
            }
            let walks = rtc.pipeline_walks;
            let mut sent = 0;
            for _ in 0..100 {
                match rtc.poll_output().unwrap() {
                    Output::Transmit(_) => sent += 1,
                    Output::Timeout(_) => break,
                    Output::Event(_) => {}
                }
            }
            // The four packets, and at the first timeout a report.
            assert!(sent >= 4, "round {round}: {sent} datagrams in this loop");
            // Once before the first datagram (something other than sending woke it) and once
            // after the last, not once per datagram.
            assert!(
                rtc.pipeline_walks - walks <= 2,
                "round {round}: {} walks for {sent} datagrams",
                rtc.pipeline_walks - walks
            );
            assert!(!rtc.readiness.only_sending());
        }
    }

    #[test]
    fn poll_transmit_hands_out_a_burst_and_leaves_the_rest_to_poll_output() {
        use crate::media::Pt;
        use crate::streams::RtpWrite;
        use std::time::Duration;

        let mut rtc = sending_rtc();
        let pt: Pt = 96.into();
        let write = |rtc: &mut Rtc, seq: u64, now| {
            let mut api = rtc.direct_api();
            let tx = api.stream_tx(&42.into()).unwrap();
            tx.write_rtp(RtpWrite::new(pt, seq.into(), 0, now, vec![0; 100]));
        };
        let drain = |rtc: &mut Rtc| {
            let mut sent = 0;
            for _ in 0..100 {
                match rtc.poll_output().unwrap() {
                    Output::Transmit(_) => sent += 1,
                    Output::Timeout(_) => return sent,
                    Output::Event(_) => {}
                }
            }
            panic!("no timeout in 100 polls");
        };

        // Nothing has run since the pipeline was walked: no burst under way.
        let mut now = rtc.last_now;
        drain(&mut rtc);
        assert!(rtc.poll_transmit().is_none());
        for seq in 1..=4 {
            write(&mut rtc, seq, now);
        }
        // Writing queues no event, but moves the timeout: the packets wait for one.
        assert!(!rtc.readiness.wants_events() && rtc.readiness.wants_timeout());
        match rtc.poll_output().unwrap() {
            Output::Timeout(t) => assert!(t <= now, "the written packets wait for a timeout"),
            o => panic!("a timeout first, not {o:?}"),
        }
        now += Duration::from_millis(20);
        rtc.handle_input(Input::Timeout(now)).unwrap();
        // A timeout may have queued events: the pipeline is walked first.
        assert!(rtc.poll_transmit().is_none());
        assert!(drain(&mut rtc) >= 4);

        // Released packets leave through poll_transmit, all of them, counted as poll_output
        // counts them; then the walk after the burst is poll_output's, with nothing left to send.
        for seq in 5..=8 {
            write(&mut rtc, seq, now);
        }
        now += Duration::from_millis(20);
        rtc.release_queued(now).unwrap();
        let (walks, bytes) = (rtc.pipeline_walks, rtc.peer_bytes_tx);
        let mut sent = vec![];
        while let Some(t) = rtc.poll_transmit() {
            assert_eq!(t.destination, "10.0.0.2:6000".parse().unwrap());
            sent.push(t.contents.len() as u64);
            assert!(sent.len() <= 4, "more datagrams than packets written");
        }
        assert_eq!(sent.len(), 4);
        assert!(sent.iter().all(|&len| len > 100), "RTP packets: {sent:?}");
        assert_eq!(rtc.peer_bytes_tx - bytes, sent.iter().sum::<u64>());
        assert_eq!(rtc.pipeline_walks, walks, "no walk between the datagrams");
        assert!(!rtc.readiness.only_sending());
        assert!(rtc.poll_transmit().is_none());
        assert_eq!(drain(&mut rtc), 0);
        assert_eq!(rtc.pipeline_walks - walks, 1, "one walk after the burst");
    }

    #[test]
    fn only_a_wake_that_may_queue_an_event_ends_the_sending_run() {
        let mut readiness = Readiness::idle();
        readiness.sent();
        assert!(readiness.only_sending());
        assert!(readiness.wants_events() && readiness.wants_timeout());
        readiness.wake().no_events();
        assert!(readiness.only_sending(), "a path that queued no event");
        drop(readiness.wake());
        assert!(
            !readiness.only_sending(),
            "a path that may have queued an event"
        );
        assert!(readiness.wants_events());
        readiness.sent();
        readiness.stop_sending();
        assert!(!readiness.only_sending());
        assert!(
            readiness.wants_events(),
            "the walk after the run is still due"
        );
    }

    #[test]
    fn narrowing_preserves_other_operations() {
        for events in [false, true] {
            for timeout in [false, true] {
                let mut readiness = Readiness {
                    events,
                    timeout,
                    sending: false,
                };
                {
                    let mut wake = readiness.wake();
                    wake.no_events();
                    wake.no_timeout();
                }
                assert_eq!(readiness.wants_events(), events);
                assert_eq!(readiness.wants_timeout(), timeout);
            }
        }
    }
}
