//! Every deadline of an engine, of every kind, in one structure.
//!
//! A deadline belongs to a participant (or to a room, under the room's key, which comes from the
//! same counter) and has a kind; a participant has at most one deadline
//! of each kind (setting it again moves it). The map from (participant, kind) to its time is the
//! truth; the heap only orders wake-ups and may hold entries that were moved or cancelled since,
//! which are skipped when they come up and dropped when the heap grows large. Because rebuilding
//! the heap starts from the map, no kind of deadline can be lost.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

use rustc_hash::FxHashMap;

use super::participant::ParticipantKey;
use super::room::TrackKey;

/// What a deadline is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TimerKind {
    /// The connection's own deadline (str0m's `poll_output` timeout).
    Rtc,
    /// Check whether the participant connected in time, or went silent.
    Liveness,
    /// Pause layers of this track (published by the participant) at the publisher if they are
    /// still unneeded.
    Layers(TrackKey),
    /// Check whether this audio track (published by the participant) went silent.
    Speaker(TrackKey),
    /// A deferred allocation of the participant's videos.
    Allocate,
    /// The room (the key is a room's) may be told who speaks again.
    Speakers,
}

type Entry = Reverse<(Instant, ParticipantKey, TimerKind)>;

/// The deadlines. See the module docs.
#[derive(Debug, Default)]
pub struct Timers {
    /// Set on every turn of a busy connection: a fast hash of small integer keys.
    due: FxHashMap<(ParticipantKey, TimerKind), Instant>,
    heap: BinaryHeap<Entry>,
}

impl Timers {
    /// Set the deadline of `kind` for `key` to `at`, replacing any earlier setting.
    pub fn set(&mut self, key: ParticipantKey, kind: TimerKind, at: Instant) {
        if self.due.insert((key, kind), at) == Some(at) {
            return;
        }
        self.heap.push(Reverse((at, key, kind)));
        self.compact();
    }

    /// The deadline of `kind` for `key`, if one is set.
    pub fn get(&self, key: ParticipantKey, kind: TimerKind) -> Option<Instant> {
        self.due.get(&(key, kind)).copied()
    }

    /// Drop the deadline of `kind` for `key`.
    pub fn cancel(&mut self, key: ParticipantKey, kind: TimerKind) {
        self.due.remove(&(key, kind));
    }

    /// Drop every deadline of `key` (it left).
    pub fn forget(&mut self, key: ParticipantKey) {
        self.due.retain(|(k, _), _| *k != key);
    }

    /// The earliest deadline. It may have been moved or cancelled since (the caller then wakes
    /// for nothing, once).
    pub fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _, _))| *at)
    }

    /// The next deadline due at `now`, removed; `None` when none is due.
    pub fn pop_due(&mut self, now: Instant) -> Option<(ParticipantKey, TimerKind)> {
        while let Some(Reverse((at, key, kind))) = self.heap.peek().copied() {
            if at > now {
                return None;
            }
            self.heap.pop();
            if self.due.get(&(key, kind)) == Some(&at) {
                self.due.remove(&(key, kind));
                return Some((key, kind));
            }
        }
        None
    }

    /// When moved and cancelled entries make up most of the heap, rebuild it from the map.
    fn compact(&mut self) {
        if self.heap.len() <= 2 * self.due.len() + 1024 {
            return;
        }
        let mut entries = std::mem::take(&mut self.heap).into_vec();
        entries.clear();
        entries.extend(
            self.due
                .iter()
                .map(|(&(key, kind), &at)| Reverse((at, key, kind))),
        );
        self.heap = BinaryHeap::from(entries);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const KINDS: [TimerKind; 6] = [
        TimerKind::Rtc,
        TimerKind::Liveness,
        TimerKind::Layers(7),
        TimerKind::Speaker(8),
        TimerKind::Allocate,
        TimerKind::Speakers,
    ];

    #[test]
    fn every_kind_fires_once_at_its_last_setting_even_after_the_heap_is_rebuilt() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut timers = Timers::default();
        for key in 1..=3u64 {
            for (i, kind) in KINDS.iter().enumerate() {
                timers.set(key, *kind, t0 + ms(1000 + 10 * key + i as u64));
            }
        }
        // A busy connection moves its own deadline thousands of times: the heap is rebuilt
        // several times on the way.
        for i in 0..10_000u64 {
            timers.set(2, TimerKind::Rtc, t0 + ms(2000 + i));
        }
        timers.cancel(3, TimerKind::Allocate);
        timers.forget(1);
        let mut fired = Vec::new();
        let mut now = t0;
        while now < t0 + ms(20_000) {
            while let Some(f) = timers.pop_due(now) {
                fired.push((now, f));
            }
            now += ms(1);
        }
        let mut want: Vec<(Instant, (ParticipantKey, TimerKind))> = Vec::new();
        for key in 2..=3u64 {
            for (i, kind) in KINDS.iter().enumerate() {
                let at = match (key, kind) {
                    (3, TimerKind::Allocate) => continue,
                    (2, TimerKind::Rtc) => t0 + ms(2000 + 9999),
                    _ => t0 + ms(1000 + 10 * key + i as u64),
                };
                want.push((at, (key, *kind)));
            }
        }
        want.sort();
        fired.sort();
        assert_eq!(fired, want);
        assert!(timers.due.is_empty());
    }

    #[test]
    fn setting_the_same_deadline_again_adds_nothing() {
        let t0 = Instant::now();
        let mut timers = Timers::default();
        for _ in 0..100 {
            timers.set(1, TimerKind::Rtc, t0);
        }
        assert_eq!(timers.heap.len(), 1);
        assert_eq!(timers.pop_due(t0), Some((1, TimerKind::Rtc)));
        assert_eq!(timers.pop_due(t0), None);
    }
}
