//! Participant and track webhooks, as seen from a worker: what each participant on the worker
//! publishes, compared whenever the engine's tracks changed (see `Engine::track_epoch`), so that
//! publish and unpublish are noticed whether or not anyone else is in the room. Does nothing
//! while webhooks are off.

use std::collections::HashMap;

use signal::protocol::ParticipantInfo;
use signal::webhook::{EventKind, WebhookEvent};

use super::webhook::Webhooks;

struct Member {
    room: String,
    /// The participant, its `tracks` as last seen.
    info: ParticipantInfo,
}

/// The participants of one worker, for webhooks.
pub(crate) struct MemberEvents {
    webhooks: Webhooks,
    members: HashMap<String, Member>,
}

impl MemberEvents {
    pub(crate) fn new(webhooks: Webhooks) -> Self {
        MemberEvents {
            webhooks,
            members: HashMap::new(),
        }
    }

    pub(crate) fn enabled(&self) -> bool {
        self.webhooks.is_enabled()
    }

    /// The participants being followed.
    pub(crate) fn ids(&self) -> Vec<String> {
        self.members.keys().cloned().collect()
    }

    /// A participant was admitted.
    pub(crate) fn joined(&mut self, room: &str, info: ParticipantInfo) {
        if !self.enabled() {
            return;
        }
        let mut plain = info.clone();
        plain.tracks.clear();
        self.webhooks
            .emit(WebhookEvent::new(EventKind::ParticipantJoined, room).participant(plain));
        let id = info.id.clone();
        self.members.insert(
            id.clone(),
            Member {
                room: room.to_owned(),
                info: ParticipantInfo {
                    tracks: Vec::new(),
                    ..info.clone()
                },
            },
        );
        self.seen(info);
    }

    /// The participant as it is now: new tracks are published, missing ones unpublished, and a
    /// new name or metadata is remembered.
    pub(crate) fn seen(&mut self, now: ParticipantInfo) {
        let Some(m) = self.members.get_mut(&now.id) else {
            return;
        };
        let before = std::mem::take(&mut m.info.tracks);
        let plain = ParticipantInfo {
            tracks: Vec::new(),
            ..now.clone()
        };
        for t in &now.tracks {
            if !before.iter().any(|b| b.id == t.id) {
                self.webhooks.emit(
                    WebhookEvent::new(EventKind::TrackPublished, &m.room)
                        .participant(plain.clone())
                        .track(t.clone()),
                );
            }
        }
        for t in &before {
            if !now.tracks.iter().any(|n| n.id == t.id) {
                self.webhooks.emit(
                    WebhookEvent::new(EventKind::TrackUnpublished, &m.room)
                        .participant(plain.clone())
                        .track(t.clone()),
                );
            }
        }
        m.info = now;
    }

    /// The participant left: its tracks are unpublished, then it leaves.
    pub(crate) fn left(&mut self, id: &str, reason: &str) {
        let Some(m) = self.members.remove(id) else {
            return;
        };
        let mut plain = m.info;
        let tracks = std::mem::take(&mut plain.tracks);
        for t in tracks {
            self.webhooks.emit(
                WebhookEvent::new(EventKind::TrackUnpublished, &m.room)
                    .participant(plain.clone())
                    .track(t),
            );
        }
        self.webhooks.emit(
            WebhookEvent::new(EventKind::ParticipantLeft, &m.room)
                .participant(plain)
                .reason(reason),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use signal::protocol::{TrackInfo, TrackKind};

    #[test]
    fn nothing_is_tracked_while_webhooks_are_off() {
        let mut e = MemberEvents::new(Webhooks::disabled());
        let info = ParticipantInfo {
            id: "p".into(),
            name: "P".into(),
            identity: None,
            metadata: None,
            tracks: vec![TrackInfo {
                id: "t".into(),
                kind: TrackKind::Audio,
                muted: false,
            }],
        };
        e.joined("r", info.clone());
        e.seen(info);
        e.left("p", "left");
        assert!(e.members.is_empty());
    }
}
