//! Redundant audio (RED, RFC 2198): a publisher that offers RED is answered with RED first and
//! sends it; subscribers get the redundant packets only while their link loses packets (and they
//! negotiated RED), plain Opus otherwise. str0m clients on the virtual network.

mod virtual_net;

use std::collections::HashSet;

use str0m::format::Codec;
use virtual_net::{secs, Bed, Received};

/// A RED packet of the test client: one 4-byte redundant header, the primary header, 60 bytes of
/// redundancy and 60 of primary.
const RED_LEN: usize = 4 + 1 + 60 + 60;
/// Plain Opus of the test client.
const OPUS_LEN: usize = 60;

/// The payload lengths of the audio packets received after `from`.
fn lengths_after(packets: &[Received], from: usize) -> HashSet<usize> {
    packets[from.min(packets.len())..]
        .iter()
        .map(|r| r.len)
        .collect()
}

/// Alice publishes (with RED when `red`, plain Opus otherwise); Bob listens with RED, Carol
/// with Opus only; both are hearing her. Returns the bed, the three and Alice's id.
fn listeners_of(red: bool) -> (Bed, usize, usize, usize, String) {
    let mut bed = Bed::new();
    bed.next_codecs = if red {
        vec![Codec::Red, Codec::Vp8]
    } else {
        vec![Codec::Vp8]
    };
    let alice = bed.join("r", "alice", true);
    bed.next_codecs = vec![Codec::Red, Codec::Vp8];
    let bob = bed.join("r", "bob", false);
    bed.next_codecs = vec![Codec::Vp8];
    let carol = bed.join("r", "carol", false);
    let id = bed.id(alice);
    assert!(bed.run_until(secs(5.0), |b| {
        b.clients[bob].audio_from(&id).len() > 50 && b.clients[carol].audio_from(&id).len() > 50
    }));
    (bed, alice, bob, carol, id)
}

#[test]
fn redundant_audio_goes_only_to_subscribers_whose_link_loses_packets() {
    let (mut bed, alice, bob, carol, id) = listeners_of(true);

    // Alice sends RED: the server's answer listed it first, as browsers need.
    let sent_pt = bed.clients[alice].audio_pt.expect("an answer");
    assert!(
        bed.clients[alice].is_red(sent_pt),
        "the answer puts RED first"
    );

    // On clean links both get plain Opus: the primary block alone, on their Opus payload type.
    for (who, i) in [("bob", bob), ("carol", carol)] {
        let got = bed.clients[i].audio_from(&id);
        assert_eq!(lengths_after(got, 10), HashSet::from([OPUS_LEN]), "{who}");
        let pt = got.last().unwrap().pt;
        let codec = bed.clients[i].codec_of(pt).unwrap().spec().codec;
        assert_eq!(codec, Codec::Opus, "{who}");
    }
    // Every packet arrived: the stripping keeps the sequence gap-free.
    virtual_net::assert_gap_free("carol's audio", bed.clients[carol].audio_from(&id));

    // Bob's link starts losing 10 %: within a few receiver reports he gets RED, Carol does not.
    bed.loss_to.insert(bob, 0.10);
    let lossy_from = bed.clients[bob].audio_from(&id).len();
    let carol_from = bed.clients[carol].audio_from(&id).len();
    assert!(
        bed.run_until(secs(8.0), |b| {
            b.clients[bob].audio_from(&id)[lossy_from..]
                .iter()
                .any(|r| r.len == RED_LEN)
        }),
        "bob never got redundant audio on a lossy link"
    );
    let red_pt = bed.clients[bob].audio_from(&id).last().unwrap().pt;
    assert!(bed.clients[bob].is_red(red_pt));
    bed.run(secs(2.0));
    assert_eq!(
        lengths_after(bed.clients[carol].audio_from(&id), carol_from),
        HashSet::from([OPUS_LEN]),
        "carol has no RED and a clean link"
    );

    // The loss ends: after the hold (10 s of a clean link) Bob is back on plain Opus.
    bed.loss_to.remove(&bob);
    let clean_from = bed.clients[bob].audio_from(&id).len();
    bed.run(secs(3.0));
    assert!(
        lengths_after(bed.clients[bob].audio_from(&id), clean_from).contains(&RED_LEN),
        "still redundant during the hold"
    );
    assert!(
        bed.run_until(secs(15.0), |b| {
            let got = b.clients[bob].audio_from(&id);
            got.len() > clean_from + 50 && got.last().is_some_and(|r| r.len == OPUS_LEN)
        }),
        "bob never went back to plain Opus"
    );
}

#[test]
fn a_plain_opus_publisher_reaches_lossy_red_listeners_with_redundancy_made_by_the_server() {
    let (mut bed, alice, bob, carol, id) = listeners_of(false);
    // Alice sends plain Opus; on clean links everybody gets it as it is.
    let opus = bed.clients[alice].pt(Codec::Opus);
    assert_eq!(bed.clients[alice].audio_pt, Some(*opus));
    for i in [bob, carol] {
        assert_eq!(
            lengths_after(bed.clients[i].audio_from(&id), 0),
            HashSet::from([OPUS_LEN])
        );
    }
    // Bob's link loses 10 %: he gets each packet with the one before it, Carol still plain Opus.
    bed.loss_to.insert(bob, 0.10);
    let from = bed.clients[bob].audio_from(&id).len();
    let carol_from = bed.clients[carol].audio_from(&id).len();
    assert!(
        bed.run_until(secs(8.0), |b| b.clients[bob].audio_from(&id)[from..]
            .iter()
            .any(|r| r.len == RED_LEN)),
        "bob never got redundant audio"
    );
    let last = bed.clients[bob].audio_from(&id).last().unwrap().clone();
    assert!(bed.clients[bob].is_red(last.pt));
    bed.run(secs(2.0));
    assert_eq!(
        lengths_after(bed.clients[carol].audio_from(&id), carol_from),
        HashSet::from([OPUS_LEN])
    );
    virtual_net::assert_gap_free("carol's audio", bed.clients[carol].audio_from(&id));
}

#[test]
fn a_plain_opus_publisher_is_forwarded_as_it_is_to_listeners_without_red() {
    let mut bed = Bed::new();
    bed.next_codecs = vec![Codec::Vp8];
    let alice = bed.join("r", "alice", true);
    bed.next_codecs = vec![Codec::Vp8];
    let bob = bed.join("r", "bob", false);
    bed.loss_to.insert(bob, 0.10);
    let id = bed.id(alice);
    assert!(bed.run_until(secs(6.0), |b| b.clients[bob].audio_from(&id).len() > 100));
    let got = bed.clients[bob].audio_from(&id);
    assert_eq!(lengths_after(got, 0), HashSet::from([OPUS_LEN]));
    let codec = bed.clients[bob].codec_of(got[0].pt).unwrap().spec().codec;
    assert_eq!(codec, Codec::Opus);
}
