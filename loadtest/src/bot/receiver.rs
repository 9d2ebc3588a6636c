//! The receiving side of a bot: which track a packet belongs to, and its measurements.

use std::collections::HashMap;

use str0m::media::{MediaKind, Mid};
use str0m::rtp::{RtpPacket, Ssrc};
use str0m::Rtc;

use crate::live::Pending;
use crate::stats::{Kind, TrackStats};

/// Where a new track was found, for the caller to act on (render preferences).
pub struct NewTrack {
    /// The server's track id.
    pub track_id: String,
    /// Audio or video.
    pub kind: Kind,
}

/// The tracks a bot receives, found by SSRC.
pub struct Receiver {
    tracks: Vec<TrackStats>,
    mids: Vec<Mid>,
    /// SSRC to track index; `None` for SSRCs not measured (above the track cap, or unknown).
    by_ssrc: HashMap<Ssrc, Option<usize>>,
    max_tracks: Option<usize>,
    /// Packets on tracks that are not measured.
    pub unmeasured: u64,
    /// When each received m-line was added by a server offer, µs.
    offered_at: HashMap<Mid, u64>,
}

impl Receiver {
    /// Measures at most `max_tracks` tracks (all when `None`).
    pub fn new(max_tracks: Option<usize>) -> Self {
        Receiver {
            tracks: Vec::new(),
            mids: Vec::new(),
            by_ssrc: HashMap::new(),
            max_tracks,
            unmeasured: 0,
            offered_at: HashMap::new(),
        }
    }

    /// The server's offer that adds m-line `mid` was applied at `now_us`: a track is subscribed.
    pub fn media_added(&mut self, mid: Mid, now_us: u64) {
        self.offered_at.insert(mid, now_us);
    }

    /// The measured tracks.
    pub fn tracks(&self) -> &[TrackStats] {
        &self.tracks
    }

    /// The measured tracks, to finish them.
    pub fn tracks_mut(&mut self) -> &mut [TrackStats] {
        &mut self.tracks
    }

    fn learn(&mut self, rtc: &mut Rtc, ssrc: Ssrc) -> (Option<usize>, Option<NewTrack>) {
        let Some(mid) = rtc.direct_api().stream_rx(&ssrc).map(|s| s.mid()) else {
            // Not mapped yet; do not cache so a later packet can try again.
            return (None, None);
        };
        let Some(media) = rtc.media(mid) else {
            return (None, None);
        };
        let publisher = media.stream_id();
        let track_id = media.track_id();
        // An m-line can be reused for another track after renegotiation: match all three.
        if let Some(i) = self
            .mids
            .iter()
            .zip(&self.tracks)
            .position(|(m, t)| *m == mid && t.publisher == publisher && t.track_id == track_id)
        {
            self.by_ssrc.insert(ssrc, Some(i));
            return (Some(i), None);
        }
        if self.max_tracks.is_some_and(|m| self.tracks.len() >= m) {
            self.by_ssrc.insert(ssrc, None);
            return (None, None);
        }
        let kind = match media.kind() {
            MediaKind::Audio => Kind::Audio,
            MediaKind::Video => Kind::Video,
        };
        let track_id = track_id.to_string();
        let mut stats = TrackStats::new(publisher.to_string(), track_id.clone(), kind);
        stats.subscribed_us = self.offered_at.get(&mid).copied();
        self.tracks.push(stats);
        self.mids.push(mid);
        let i = self.tracks.len() - 1;
        self.by_ssrc.insert(ssrc, Some(i));
        (Some(i), Some(NewTrack { track_id, kind }))
    }

    /// One received RTP packet at `now_us`. Returns a track seen for the first time.
    pub fn packet(
        &mut self,
        rtc: &mut Rtc,
        now_us: u64,
        pkt: &RtpPacket,
        pending: &mut Pending,
    ) -> Option<NewTrack> {
        let ssrc = pkt.header.ssrc;
        let (index, new) = match self.by_ssrc.get(&ssrc) {
            Some(i) => (*i, None),
            None => self.learn(rtc, ssrc),
        };
        // Every RTP packet counts as forwarded, measured or not.
        pending.rx_packets += 1;
        pending.rx_bytes += pkt.payload.len() as u64;
        let Some(i) = index else {
            self.unmeasured += 1;
            return None;
        };
        let t = &mut self.tracks[i];
        let (lost, latency) = t.push(
            now_us,
            pkt.header.sequence_number,
            pkt.header.timestamp,
            pkt.header.marker,
            &pkt.payload,
        );
        pending.lost += lost;
        if let Some(us) = latency {
            pending.latencies.push(us);
        }
        new
    }
}
