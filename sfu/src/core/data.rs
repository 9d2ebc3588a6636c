//! Data channels: messages a participant sends on its peer connection are relayed by the server
//! to the room, or to named participants, with the sender's identity stamped by the server.
//!
//! A client opens channels on its one peer connection; the bundled client opens `reliable`
//! (ordered, reliable) and `lossy` (unordered, no retransmissions). A message on a channel is
//! relayed on the channel with the same label of each recipient.
//!
//! - Text messages are JSON: `{"to": ["<id>", ...], "payload": <any JSON>}` (`to` optional: the
//!   whole room). Recipients get `{"from": "<id>", "payload": <...>}` plus `"direct": true` when
//!   they were named. Whatever `from` a sender writes is ignored.
//! - Binary messages go to the whole room, prefixed with one byte (the length of the sender's id)
//!   and the id.
//!
//! Limits per sender: [`MAX_DATA_MESSAGE`] bytes per message, and a token bucket of
//! [`DATA_RATE`] messages/s (burst [`DATA_BURST`]) and [`DATA_BYTES_RATE`] bytes/s. A message
//! over a limit is not relayed and the sender gets an error over signalling
//! (`message_too_large` or `rate_limited`, at most one per second).

use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::value::RawValue;
use str0m::channel::ChannelId;
use tracing::debug;

use super::event::{Error, Event};
use super::limits::TokenBucket;
use super::participant::ParticipantKey;
use super::Engine;

/// Largest message relayed, in bytes.
pub const MAX_DATA_MESSAGE: usize = 16 * 1024;
/// Messages per second a participant may send, sustained.
pub const DATA_RATE: f64 = 30.0;
/// Messages a participant may send in a burst.
pub const DATA_BURST: f64 = 60.0;
/// Bytes per second a participant may send, sustained (burst: two seconds' worth).
pub const DATA_BYTES_RATE: f64 = 128.0 * 1024.0;
/// At most one limit error per this interval goes back to a sender.
const ERROR_INTERVAL: Duration = Duration::from_secs(1);

/// Token buckets over messages and bytes.
#[derive(Debug, Clone)]
pub struct DataLimiter {
    messages: TokenBucket,
    bytes: TokenBucket,
    last_error: Option<Instant>,
}

impl Default for DataLimiter {
    fn default() -> Self {
        DataLimiter {
            messages: TokenBucket::new(DATA_BURST, DATA_RATE),
            bytes: TokenBucket::new(2.0 * DATA_BYTES_RATE, DATA_BYTES_RATE),
            last_error: None,
        }
    }
}

impl DataLimiter {
    /// Take one message of `len` bytes; false (and nothing taken) if over a limit.
    pub fn take(&mut self, now: Instant, len: usize) -> bool {
        let len = len as f64;
        if !self.messages.has(now, 1.0) || !self.bytes.has(now, len) {
            return false;
        }
        self.messages.take(now, 1.0) && self.bytes.take(now, len)
    }

    /// Whether an error may be sent now; records it if so.
    fn error_due(&mut self, now: Instant) -> bool {
        let due = self
            .last_error
            .is_none_or(|t| now.saturating_duration_since(t) >= ERROR_INTERVAL);
        if due {
            self.last_error = Some(now);
        }
        due
    }
}

/// A participant's data channels (by label) and the limits on what it sends on them.
#[derive(Debug, Default)]
pub struct DataChannels {
    /// Open channels by label.
    channels: Vec<(String, ChannelId)>,
    /// Limits on what it sends.
    limiter: DataLimiter,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope<'a> {
    #[serde(default)]
    to: Option<Vec<String>>,
    #[serde(borrow)]
    payload: &'a RawValue,
    /// Ignored: the server stamps the sender.
    #[serde(default, rename = "from")]
    _from: Option<serde::de::IgnoredAny>,
}

impl Engine {
    /// A channel of participant `key` opened.
    pub(super) fn channel_open(&mut self, key: ParticipantKey, id: ChannelId, label: String) {
        if let Some(p) = self.participants.get_mut(&key) {
            p.data.channels.retain(|(l, _)| *l != label);
            p.data.channels.push((label, id));
        }
    }

    /// A channel of participant `key` closed.
    pub(super) fn channel_close(&mut self, key: ParticipantKey, id: ChannelId) {
        if let Some(p) = self.participants.get_mut(&key) {
            p.data.channels.retain(|(_, c)| *c != id);
        }
    }

    /// A message arrived on a channel of participant `key`: check it and relay it.
    pub(super) fn channel_data(
        &mut self,
        now: Instant,
        key: ParticipantKey,
        id: ChannelId,
        binary: bool,
        data: &[u8],
    ) {
        let Some(p) = self.participants.get_mut(&key) else {
            return;
        };
        let Some(label) = p
            .data
            .channels
            .iter()
            .find(|(_, c)| *c == id)
            .map(|(l, _)| l.clone())
        else {
            return;
        };
        let refusal = if !p.grants.publish_data {
            Some(Error::MayNotSendData)
        } else if data.len() > MAX_DATA_MESSAGE {
            Some(Error::DataTooLarge(MAX_DATA_MESSAGE))
        } else if !p.data.limiter.take(now, data.len()) {
            Some(Error::DataRateLimited {
                messages_per_second: DATA_RATE,
                kib_per_second: DATA_BYTES_RATE as usize / 1024,
            })
        } else {
            None
        };
        if let Some(error) = refusal {
            self.stats.data_refused += 1;
            if p.data.limiter.error_due(now) {
                let refused = Event::Refused {
                    participant: p.id.clone(),
                    error,
                };
                self.emit(refused);
            }
            return;
        }
        let from = p.id.clone();
        let room = p.room.clone();
        let (to, out): (Option<Vec<String>>, Vec<u8>) = if binary {
            let mut out = Vec::with_capacity(1 + from.len() + data.len());
            out.push(from.len() as u8);
            out.extend_from_slice(from.as_bytes());
            out.extend_from_slice(data);
            (None, out)
        } else {
            match std::str::from_utf8(data)
                .ok()
                .and_then(|t| serde_json::from_str::<Envelope>(t).ok())
            {
                Some(env) => {
                    let direct = env.to.is_some();
                    let mut out = String::with_capacity(data.len() + from.len() + 32);
                    out.push_str("{\"from\":");
                    out.push_str(&serde_json::Value::from(from.as_str()).to_string());
                    if direct {
                        out.push_str(",\"direct\":true");
                    }
                    out.push_str(",\"payload\":");
                    out.push_str(env.payload.get());
                    out.push('}');
                    (env.to, out.into_bytes())
                }
                None => {
                    self.stats.data_refused += 1;
                    if p.data.limiter.error_due(now) {
                        self.emit(Event::Refused {
                            participant: from,
                            error: Error::BadDataMessage,
                        });
                    }
                    return;
                }
            }
        };
        self.relay_data(&room, &label, binary, to.as_deref(), &out);
        self.deliver_data(&room, Some(key), &label, binary, to.as_deref(), &out);
    }

    /// Write a stamped data message to the participants of `room` here (but its sender
    /// `except`; only those named in `to`, if given) on their channel labelled `label`.
    pub(super) fn deliver_data(
        &mut self,
        room: &str,
        except: Option<ParticipantKey>,
        label: &str,
        binary: bool,
        to: Option<&[String]>,
        out: &[u8],
    ) {
        let Some(r) = self.rooms.room(room) else {
            return;
        };
        for &k in &r.participants {
            if Some(k) == except {
                continue;
            }
            let Some(o) = self.participants.get_mut(&k) else {
                continue;
            };
            if to.is_some_and(|to| !to.contains(&o.id)) {
                continue;
            }
            let Some(&(_, cid)) = o.data.channels.iter().find(|(l, _)| *l == label) else {
                continue;
            };
            let written = o
                .rtc
                .channel(cid)
                .map(|mut c| c.write(binary, out))
                .is_some_and(|r| r.unwrap_or(false));
            if written {
                self.stats.data_relayed += 1;
                if !o.touched {
                    o.touched = true;
                    self.touched.push(k);
                }
            } else {
                // The recipient's channel buffer is full: it is not keeping up.
                self.stats.data_dropped += 1;
                debug!(to = %o.id, "data message dropped: channel buffer full");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_allows_bursts_and_refills() {
        let t0 = Instant::now();
        let mut l = DataLimiter::default();
        let sent = (0..100).filter(|_| l.take(t0, 10)).count();
        assert_eq!(sent, DATA_BURST as usize);
        assert!(!l.take(t0, 10));
        assert!(
            l.take(t0 + Duration::from_millis(100), 10),
            "3 refilled after 100 ms"
        );
        let mut l = DataLimiter::default();
        assert!(l.take(t0, 200 * 1024));
        assert!(!l.take(t0, 100 * 1024), "bytes run out before messages");
    }
}
