//! Connection quality on the virtual network: a clean link is excellent, loss towards a
//! participant makes it poor for everyone in the room, and a participant that goes silent is lost
//! before it is removed.

mod virtual_net;

use signal::protocol::ServerMessage;
use virtual_net::{all_receive_all, secs, Bed};

/// The qualities of `whose` that client `at` was told, in order.
fn told(bed: &Bed, at: usize, whose: &str) -> Vec<String> {
    bed.clients[at]
        .messages
        .iter()
        .filter_map(|m| match m {
            ServerMessage::ConnectionQuality {
                participant_id,
                quality,
            } if participant_id == whose => Some(quality.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn quality_follows_loss_and_silence_and_reaches_the_whole_room() {
    let mut bed = Bed::new();
    let a = bed.join("r", "ann", true);
    let b = bed.join("r", "bob", true);
    assert!(bed.run_until(secs(5.0), |b| all_receive_all(b, 2)));
    bed.run(secs(3.0));
    let ida = bed.id(a);
    assert_eq!(told(&bed, b, &ida), ["excellent"], "bob hears of ann");
    assert_eq!(told(&bed, a, &ida), ["excellent"], "ann hears of herself");

    // 15 % of what the server sends ann is lost: her receiver reports say so.
    bed.loss_to.insert(a, 0.15);
    assert!(
        bed.run_until(secs(6.0), |bed| told(bed, b, &ida)
            .last()
            .is_some_and(|q| q == "poor")),
        "bob was told {:?}",
        told(&bed, b, &ida)
    );
    // The loss ends: back to excellent after a few clean seconds.
    bed.loss_to.remove(&a);
    assert!(
        bed.run_until(secs(8.0), |bed| told(bed, b, &ida)
            .last()
            .is_some_and(|q| q == "excellent")),
        "bob was told {:?}",
        told(&bed, b, &ida)
    );

    // Ann's link goes down: lost within a few seconds, before the silence timeout removes her.
    bed.clients[a].offline = true;
    assert!(
        bed.run_until(secs(4.0), |bed| told(bed, b, &ida)
            .last()
            .is_some_and(|q| q == "lost")),
        "bob was told {:?}",
        told(&bed, b, &ida)
    );
    assert_eq!(bed.engine.participant_count(), 2, "still in the room");
}
