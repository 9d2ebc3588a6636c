//! What one attack sent and how the server answered, counted as it goes.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;

use super::Attack;

/// Distinct keys per counter map; more go under `other`.
const MAX_KEYS: usize = 48;
/// Alarms and notes kept per attack.
const MAX_TEXTS: usize = 12;
/// Longest text kept in an alarm.
const MAX_TEXT_CHARS: usize = 200;

/// The report of one attack.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AttackOutcome {
    /// `stun-flood`, `track-flood`, ...
    pub attack: &'static str,
    /// What was sent, by kind.
    pub sent: BTreeMap<String, u64>,
    /// How the server answered: message types (`answer`, `pong`), `error:<code>`,
    /// `left:<reason>`, STUN answer classes, HTTP status lines.
    pub answers: BTreeMap<String, u64>,
    /// How the server ended connections: `<close code> <reason>`, `dropped`, `eof`.
    pub closes: BTreeMap<String, u64>,
    /// Connections the server refused (TCP or WebSocket handshake), by why.
    pub refused: BTreeMap<String, u64>,
    /// Most connections open at once from one source address.
    pub peak_open_per_ip: u64,
    /// The longest any of its connections stayed open, s.
    pub longest_open_s: f64,
    /// Things a fixed server must not do: internal text in errors, a forged STUN request
    /// answered with success, more connections per address than the expected cap, ...
    pub alarms: Vec<String>,
    /// Other observations.
    pub notes: Vec<String>,
    /// The first text the server sent with each kind of answer that has one (error messages).
    pub examples: BTreeMap<String, String>,
}

fn join_counts(map: &BTreeMap<String, u64>) -> String {
    if map.is_empty() {
        return "-".into();
    }
    let parts: Vec<String> = map.iter().map(|(k, n)| format!("{k} {n}")).collect();
    parts.join(", ")
}

impl AttackOutcome {
    /// A few lines for the summary.
    pub fn summary(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "  {:<12} sent:    {}",
            self.attack,
            join_counts(&self.sent)
        );
        let _ = writeln!(s, "  {:<12} answers: {}", "", join_counts(&self.answers));
        if !self.closes.is_empty() || !self.refused.is_empty() || self.peak_open_per_ip > 0 {
            let _ = writeln!(
                s,
                "  {:<12} closes:  {}; refused: {}; most open per address {}, longest open {:.1} s",
                "",
                join_counts(&self.closes),
                join_counts(&self.refused),
                self.peak_open_per_ip,
                self.longest_open_s
            );
        }
        for (kind, text) in &self.examples {
            let _ = writeln!(s, "  {:<12} example: {kind}: {text:?}", "");
        }
        for n in &self.notes {
            let _ = writeln!(s, "  {:<12} note:    {n}", "");
        }
        for a in &self.alarms {
            let _ = writeln!(s, "  {:<12} ALARM:   {a}", "");
        }
        s
    }
}

fn bump(map: &mut BTreeMap<String, u64>, key: &str, n: u64) {
    if map.len() >= MAX_KEYS && !map.contains_key(key) {
        *map.entry("other".into()).or_default() += n;
    } else {
        *map.entry(key.chars().take(80).collect()).or_default() += n;
    }
}

fn push_text(list: &mut Vec<String>, text: String) {
    let text: String = text.chars().take(MAX_TEXT_CHARS).collect();
    if list.len() < MAX_TEXTS && !list.contains(&text) {
        list.push(text);
    }
}

/// Counters of one attack, shared by its tasks.
pub struct Tally {
    outcome: Mutex<AttackOutcome>,
    /// Alarms by kind: how often, and the first example.
    alarms: Mutex<BTreeMap<String, (u64, String)>>,
    open: Mutex<HashMap<IpAddr, u64>>,
    expect_per_ip: Option<u64>,
}

impl Tally {
    /// Empty counters for `attack`.
    pub fn new(attack: Attack, expect_per_ip: Option<u64>) -> Self {
        Tally {
            outcome: Mutex::new(AttackOutcome {
                attack: attack.name(),
                ..AttackOutcome::default()
            }),
            alarms: Mutex::new(BTreeMap::new()),
            open: Mutex::new(HashMap::new()),
            expect_per_ip,
        }
    }

    /// `n` of `what` sent.
    pub fn sent(&self, what: &str, n: u64) {
        bump(&mut self.outcome.lock().sent, what, n);
    }

    /// The server answered `what`.
    pub fn answer(&self, what: &str) {
        bump(&mut self.outcome.lock().answers, what, 1);
    }

    /// The server ended a connection this way.
    pub fn closed(&self, how: &str) {
        bump(&mut self.outcome.lock().closes, how, 1);
    }

    /// A connection was refused.
    pub fn refused(&self, why: &str) {
        bump(&mut self.outcome.lock().refused, why, 1);
    }

    /// Something a fixed server must not do.
    pub fn alarm(&self, text: String) {
        self.alarm_example(text, "");
    }

    /// Something a fixed server must not do, of kind `kind`, seen in `example`; one line per kind.
    pub fn alarm_example(&self, kind: String, example: &str) {
        let mut alarms = self.alarms.lock();
        if alarms.len() >= MAX_TEXTS && !alarms.contains_key(&kind) {
            return;
        }
        let entry = alarms
            .entry(kind)
            .or_insert_with(|| (0, example.chars().take(MAX_TEXT_CHARS).collect()));
        entry.0 += 1;
    }

    /// An observation.
    pub fn note(&self, text: String) {
        push_text(&mut self.outcome.lock().notes, text);
    }

    /// The server answered `kind` with `text`; the first text of each kind is kept.
    pub fn example(&self, kind: &str, text: &str) {
        let mut o = self.outcome.lock();
        if o.examples.len() < MAX_KEYS && !o.examples.contains_key(kind) {
            o.examples.insert(
                kind.to_string(),
                text.chars().take(MAX_TEXT_CHARS).collect(),
            );
        }
    }

    /// A connection stayed open this long.
    pub fn lived(&self, d: Duration) {
        let mut o = self.outcome.lock();
        o.longest_open_s = o.longest_open_s.max(d.as_secs_f64());
    }

    /// A connection from `ip` is open until the guard drops.
    pub fn opened(self: &Arc<Self>, ip: IpAddr) -> OpenGuard {
        let now = {
            let mut open = self.open.lock();
            let n = open.entry(ip).or_default();
            *n += 1;
            *n
        };
        let exceeded = {
            let mut o = self.outcome.lock();
            let exceeded = self
                .expect_per_ip
                .filter(|cap| now > *cap && o.peak_open_per_ip <= *cap);
            o.peak_open_per_ip = o.peak_open_per_ip.max(now);
            exceeded
        };
        if let Some(cap) = exceeded {
            self.alarm(format!(
                "the server accepted {now} connections at once from {ip} (expected at most {cap})"
            ));
        }
        OpenGuard {
            tally: self.clone(),
            ip,
        }
    }

    /// The report.
    pub fn outcome(&self) -> AttackOutcome {
        let mut o = self.outcome.lock().clone();
        o.alarms = self
            .alarms
            .lock()
            .iter()
            .map(|(kind, (n, example))| match (n, example.is_empty()) {
                (1, true) => kind.clone(),
                (n, true) => format!("{kind} ({n} times)"),
                (n, false) => format!("{kind} ({n} times), e.g. {example:?}"),
            })
            .collect();
        o
    }
}

/// Counts a connection as open while it lives.
pub struct OpenGuard {
    tally: Arc<Tally>,
    ip: IpAddr,
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        if let Some(n) = self.tally.open.lock().get_mut(&self.ip) {
            *n = n.saturating_sub(1);
        }
    }
}

/// Why an error text from the server looks like internal state leaked out, if it does.
pub fn internal_text(message: &str) -> Option<&'static str> {
    const MARKERS: [(&str, &str); 7] = [
        ("PointerOffset", "a parser's internal type"),
        ("panicked", "a panic message"),
        ("RUST_BACKTRACE", "a panic message"),
        (".rs:", "a source location"),
        ("Os { code", "an OS error's debug form"),
        ("{ kind:", "an error's debug form"),
        ("thread '", "a thread name"),
    ];
    if let Some((_, why)) = MARKERS.iter().find(|(m, _)| message.contains(m)) {
        return Some(why);
    }
    let bytes = message.as_bytes();
    let hex_address = bytes.windows(2).enumerate().any(|(i, w)| {
        w == b"0x"
            && bytes[i + 2..]
                .iter()
                .take_while(|b| b.is_ascii_hexdigit())
                .count()
                >= 6
    });
    if hex_address {
        return Some("a hexadecimal address");
    }
    if message.chars().count() > 400 {
        return Some("a very long text (input echoed back?)");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_text_is_found() {
        let table = [
            ("invalid offer SDP", None),
            ("answer without an offer from the server", None),
            ("bad value 0x12", None),
            (
                "Parse error at PointerOffset(0x5581e2a1b4c0)",
                Some("a parser's internal type"),
            ),
            ("at 0x7ffd3a2b10", Some("a hexadecimal address")),
            (
                "thread 'tokio' panicked at src/x.rs:3:5",
                Some("a panic message"),
            ),
            (
                "io: Os { code: 2, kind: NotFound }",
                Some("an OS error's debug form"),
            ),
        ];
        for (text, want) in table {
            assert_eq!(internal_text(text), want, "{text}");
        }
        assert!(internal_text(&"x".repeat(401)).is_some());
    }

    #[test]
    fn counters_are_bounded_and_caps_alarm_once() {
        let t = Arc::new(Tally::new(Attack::WsFlood, Some(2)));
        for i in 0..100 {
            t.answer(&format!("k{i}"));
        }
        let o = t.outcome();
        assert_eq!(o.answers.len(), MAX_KEYS + 1);
        assert_eq!(o.answers["other"], 100 - MAX_KEYS as u64);
        let ip: IpAddr = "127.0.13.1".parse().unwrap();
        let guards: Vec<_> = (0..5).map(|_| t.opened(ip)).collect();
        assert_eq!(t.outcome().peak_open_per_ip, 5);
        assert_eq!(t.outcome().alarms.len(), 1);
        drop(guards);
        assert_eq!(t.open.lock()[&ip], 0);
    }
}
