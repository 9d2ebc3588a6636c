//! Rooms shaped like the load tester's four reference scenarios, at the bed's scale, for the
//! engine's instruction count (`benches/engine_cost.rs`) and the test that keeps them working.

use std::collections::HashMap;

use super::bed::Bed;

/// A room of the bed shaped like one of the reference scenarios.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Two simulcast cameras (q/h/f) watched by `viewers` who publish nothing.
    Cameras,
    /// One camera sending one layer (1280x720, eight packets a frame) to `viewers`.
    Single,
    /// `viewers` participants, each publishing a simulcast camera and watching all the others.
    Meeting,
    /// Ten participants publishing audio only, heard by `viewers` listeners.
    Audio,
}

impl Scenario {
    pub const ALL: [Scenario; 4] = [
        Scenario::Cameras,
        Scenario::Single,
        Scenario::Meeting,
        Scenario::Audio,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Cameras => "cameras",
            Scenario::Single => "single",
            Scenario::Meeting => "meeting",
            Scenario::Audio => "audio",
        }
    }

    pub fn from_name(name: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The size the instruction count uses unless told otherwise.
    pub fn default_viewers(self) -> usize {
        match self {
            Scenario::Cameras => 20,
            Scenario::Single => 40,
            Scenario::Meeting => 8,
            Scenario::Audio => 30,
        }
    }

    /// The publishers: their number, whether they send simulcast, audio only.
    fn publishers(self, viewers: usize) -> (usize, bool, bool) {
        match self {
            Scenario::Cameras => (2, true, false),
            Scenario::Single => (1, false, false),
            Scenario::Meeting => (viewers, true, false),
            Scenario::Audio => (10, false, true),
        }
    }

    /// A bed with the room joined (nothing run yet): publishers first, then the viewers (in the
    /// meeting, every participant is both).
    pub fn bed(self, viewers: usize) -> Bed {
        let mut bed = Bed::new();
        let (publishers, simulcast, audio_only) = self.publishers(viewers);
        bed.next_simulcast = simulcast;
        bed.next_single_layer = 2;
        bed.next_audio_only = audio_only;
        for i in 0..publishers {
            bed.join("bench", &format!("pub{i}"), true);
        }
        bed.next_simulcast = false;
        bed.next_audio_only = false;
        if self != Scenario::Meeting {
            for i in 0..viewers {
                bed.join("bench", &format!("view{i}"), false);
            }
        }
        bed
    }

    /// The indexes of the publishers in a bed made by [`Scenario::bed`].
    pub fn publisher_indexes(self, viewers: usize) -> std::ops::Range<usize> {
        0..self.publishers(viewers).0
    }
}

/// RTP datagrams the engine sent so far (media, resends and probes), by client index.
pub fn rtp_sent(bed: &Bed) -> HashMap<usize, usize> {
    let mut out = HashMap::new();
    for ((ci, _), (datagrams, _)) in &bed.sent_by_pt {
        *out.entry(*ci).or_default() += datagrams;
    }
    out
}
