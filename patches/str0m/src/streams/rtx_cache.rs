use std::time::Duration;
use std::time::Instant;

use crate::io::DATAGRAM_MAX_PACKET_SIZE;
use crate::rtp_::SeqNo;

use super::RtpPacket;
use super::rtx_cache_buf::EvictingBuffer;

const RTX_CACHE_SIZE_QUANTIZER: usize = 25;
const RTX_CACHE_QUANTIZE_SLOTS: usize = DATAGRAM_MAX_PACKET_SIZE / RTX_CACHE_SIZE_QUANTIZER;

#[derive(Debug)]
pub(crate) struct RtxCache {
    // Data, new additions here probably need to be cleared in [`clear`].
    packet_by_seq_no: EvictingBuffer<RtpPacket>,

    // Technically we want [Option<SeqNo>; X] to indicate the absence of
    // a SeqNo. However We can half the storage space by using the sentinel
    // values SeqNo::MAX to indicate None
    seq_no_by_quantized_size: [SeqNo; RTX_CACHE_QUANTIZE_SLOTS],
}

impl RtxCache {
    pub fn new(max_packet_count: usize, max_packet_age: Duration) -> Self {
        Self {
            packet_by_seq_no: EvictingBuffer::new(10, max_packet_age, max_packet_count),
            seq_no_by_quantized_size: [SeqNo::MAX; RTX_CACHE_QUANTIZE_SLOTS],
        }
    }

    /// Cache a packet sent at `now`.
    ///
    /// Packets past their age are not swept out here: a sweep would read the oldest entry, out
    /// of the CPU's caches by then, at every packet. A packet past its age is overwritten when a
    /// new one lands on its slot (a write that touches its memory anyway), and the lookups below
    /// leave it out.
    pub fn cache_sent_packet(&mut self, packet: RtpPacket, now: Instant) {
        assert!(packet.nackable);
        let seq_no = packet.seq_no;
        let quantized_size = packet.payload.len() / RTX_CACHE_SIZE_QUANTIZER;
        self.packet_by_seq_no.push(*seq_no, now, packet);
        self.seq_no_by_quantized_size[quantized_size] = seq_no;
    }

    pub fn last_cached_seq_no(&self) -> Option<SeqNo> {
        Some(self.packet_by_seq_no.last_position()?.into())
    }

    /// The cached packet `seq_no`, if it is not past the cache's age at `now`.
    pub fn get_cached_packet_by_seq_no(
        &mut self,
        seq_no: SeqNo,
        now: Instant,
    ) -> Option<&mut RtpPacket> {
        self.packet_by_seq_no.get_mut_within_age(*seq_no, now)
    }

    /// The most recently cached packet of at most `max_size` bytes (quantized), if it is not
    /// past the cache's age at `now`.
    pub fn get_cached_packet_smaller_than(
        &mut self,
        max_size: usize,
        now: Instant,
    ) -> Option<&mut RtpPacket> {
        let quantized_size = max_size / RTX_CACHE_SIZE_QUANTIZER;

        let seq_no = self.seq_no_by_quantized_size[..quantized_size]
            .iter()
            .rev()
            .filter(|seq_no| !seq_no.is_max())
            .find(|seq_no| self.packet_by_seq_no.contains_within_age(***seq_no, now))?;

        self.get_cached_packet_by_seq_no(*seq_no, now)
    }

    pub(crate) fn last_packet(&self) -> Option<&[u8]> {
        let packet = self.packet_by_seq_no.last()?;
        Some(packet.payload.as_ref())
    }

    pub(crate) fn clear(&mut self) {
        self.packet_by_seq_no.clear();
        self.seq_no_by_quantized_size = [SeqNo::MAX; RTX_CACHE_QUANTIZE_SLOTS];
    }
}

#[cfg(test)]
mod test {
    use crate::rtp_::MediaTime;
    use crate::rtp_::RtpHeader;

    use super::*;

    fn after(now: Instant, millis: u64) -> Instant {
        now + Duration::from_millis(millis)
    }

    fn packet(now: Instant, seq_no: u64, millis: u64) -> RtpPacket {
        RtpPacket {
            header: RtpHeader::default(),
            seq_no: seq_no.into(),
            time: MediaTime::from_90khz(0),
            payload: millis.to_be_bytes().into(),
            vp8_patch: None,
            timestamp: after(now, millis),
            last_sender_info: None,
            nackable: true,
        }
    }

    #[test]
    fn rtx_cache_0_sized() {
        let now = Instant::now();
        let mut rtx_cache = RtxCache::new(0, Duration::from_secs(3));
        rtx_cache.cache_sent_packet(packet(now, 1, 10), after(now, 10));
        let at = after(now, 10);
        assert_eq!(
            Some(&mut packet(now, 1, 10)),
            rtx_cache.get_cached_packet_by_seq_no(1.into(), at)
        );
        assert_eq!(
            Some(&mut packet(now, 1, 10)),
            rtx_cache.get_cached_packet_smaller_than(1000, at)
        );
    }

    #[test]
    fn rtx_cache_0_duration() {
        let now = Instant::now();
        let mut rtx_cache = RtxCache::new(10, Duration::from_secs(0));
        rtx_cache.cache_sent_packet(packet(now, 1, 10), after(now, 10));
        let at = after(now, 10);
        assert_eq!(None, rtx_cache.get_cached_packet_by_seq_no(1.into(), at));
        assert_eq!(None, rtx_cache.get_cached_packet_smaller_than(1000, at));
    }

    #[test]
    fn rtx_cache_1_sized() {
        let now = Instant::now();
        let mut rtx_cache = RtxCache::new(1, Duration::from_secs(3));
        rtx_cache.cache_sent_packet(packet(now, 1, 10), after(now, 10));
        let at = after(now, 10);
        assert_eq!(
            Some(&mut packet(now, 1, 10)),
            rtx_cache.get_cached_packet_by_seq_no(1.into(), at)
        );
        assert_eq!(
            Some(&mut packet(now, 1, 10)),
            rtx_cache.get_cached_packet_smaller_than(1000, at)
        );
        assert_eq!(
            Some(&mut packet(now, 1, 10)),
            rtx_cache.get_cached_packet_smaller_than(25, at)
        );
        assert_eq!(None, rtx_cache.get_cached_packet_smaller_than(24, at));
        rtx_cache.cache_sent_packet(packet(now, 2, 20), after(now, 20));
        assert_eq!(
            Some(&mut packet(now, 2, 20)),
            rtx_cache.get_cached_packet_by_seq_no(2.into(), after(now, 20))
        );
    }

    #[test]
    fn rtx_cache_100_sized_backwards() {
        let now = Instant::now();
        let mut rtx_cache = RtxCache::new(100, Duration::from_secs(3));

        for i in 1..=200 {
            let seq_no = 201 - i;
            let pkt = packet(now, seq_no, (201 - i) * 10);
            let now = after(now, i * 10);
            rtx_cache.cache_sent_packet(pkt, now);
        }

        let at = after(now, 2000);
        assert_eq!(
            Some(&mut packet(now, 200, 2000)),
            rtx_cache.get_cached_packet_by_seq_no(200.into(), at)
        );
        assert_eq!(None, rtx_cache.get_cached_packet_by_seq_no(100.into(), at));
        assert_eq!(None, rtx_cache.get_cached_packet_by_seq_no(101.into(), at));
    }

    #[test]
    fn rtx_cache_eviction() {
        let now = Instant::now();
        // Cache can take all entries
        let mut rtx_cache = RtxCache::new(400, Duration::from_secs(1));
        for i in 1..=200 {
            let seq_no = i;
            let pkt = packet(now, seq_no, i * 10);
            let now = after(now, i * 10);
            rtx_cache.cache_sent_packet(pkt, now);
        }

        let at = after(now, 2000);
        assert_eq!(None, rtx_cache.get_cached_packet_by_seq_no(99.into(), at));

        assert_eq!(
            Some(&mut packet(now, 100, 1000)),
            rtx_cache.get_cached_packet_by_seq_no(100.into(), at)
        );
        assert_eq!(
            Some(&mut packet(now, 200, 2000)),
            rtx_cache.get_cached_packet_by_seq_no(200.into(), at)
        );
    }

    #[test]
    fn a_packet_past_its_age_is_not_resent_though_nothing_was_cached_since() {
        let now = Instant::now();
        let mut rtx_cache = RtxCache::new(400, Duration::from_secs(3));
        rtx_cache.cache_sent_packet(packet(now, 1, 0), now);

        let at_3s = after(now, 3000);
        assert!(
            rtx_cache
                .get_cached_packet_by_seq_no(1.into(), at_3s)
                .is_some()
        );
        assert!(
            rtx_cache
                .get_cached_packet_smaller_than(1000, at_3s)
                .is_some()
        );

        let later = after(now, 3001);
        assert_eq!(None, rtx_cache.get_cached_packet_by_seq_no(1.into(), later));
        assert_eq!(None, rtx_cache.get_cached_packet_smaller_than(1000, later));
    }

    #[test]
    fn the_cache_holds_what_its_age_covers_and_grows_no_further() {
        let now = Instant::now();
        // 100 packets a second for a minute, a second of age: about 100 packets to hold.
        let mut rtx_cache = RtxCache::new(2000, Duration::from_secs(1));
        for i in 1..=6000 {
            rtx_cache.cache_sent_packet(packet(now, i, i * 10), after(now, i * 10));
        }
        let slots = rtx_cache.packet_by_seq_no.capacity();
        assert!((101..=140).contains(&slots), "{slots} slots");

        // A NACK reaches back exactly one second and no further.
        let at = after(now, 60_000);
        assert!(
            rtx_cache
                .get_cached_packet_by_seq_no(5900.into(), at)
                .is_some()
        );
        assert!(
            rtx_cache
                .get_cached_packet_by_seq_no(5899.into(), at)
                .is_none()
        );
    }
}
