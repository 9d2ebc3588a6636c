//! Video codecs: a room's policy (which codecs publishers may send, in which order of
//! preference) and the edits of SDP text that apply it.
//!
//! str0m lists the codecs of an answer in the order of its own configuration, whatever order the
//! offer had; a browser then sends the first one. So the engine edits the SDP around str0m:
//!
//! - a client's offer loses, on m-lines new to the session, the video codecs the room does not
//!   take (and the ones the server does not forward); a sending m-line left without any is made
//!   `inactive` before str0m sees it ([`prepare_offer`]);
//! - the answer lists each video m-line's codecs in the room's order of preference, then in the
//!   offer's, and keeps that order for the life of the m-line ([`shape_answer`]), in later
//!   server offers too ([`keep_orders`]);
//! - an offer to a subscriber carries, on the m-line of a new video track, only the codec its
//!   publisher sends ([`restrict_mline`]).
//!
//! The edits work on the text, line by line, and never fail: what they do not understand they
//! leave as it is, for str0m to judge.

use std::collections::HashMap;

use str0m::media::{Mid, Pt};

use super::track::VideoCodec;

impl VideoCodec {
    /// The codecs the server forwards, in its own order of preference.
    pub const FORWARDED: [VideoCodec; 4] = [
        VideoCodec::Vp8,
        VideoCodec::H264,
        VideoCodec::Vp9,
        VideoCodec::Av1,
    ];

    /// The name in a room's policy (and the REST API): `vp8`, `h264`, `vp9`, `av1`.
    pub fn as_str(self) -> &'static str {
        match self {
            VideoCodec::Vp8 => "vp8",
            VideoCodec::H264 => "h264",
            VideoCodec::Vp9 => "vp9",
            VideoCodec::Av1 => "av1",
            VideoCodec::Other => "other",
        }
    }

    /// The codec named `name` in a policy (any case).
    pub fn from_name(name: &str) -> Option<VideoCodec> {
        VideoCodec::FORWARDED
            .into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(name))
    }

    /// The codec of an `a=rtpmap` encoding name (`VP8`, `H264`, `VP9`, ...).
    fn from_encoding(name: &str) -> VideoCodec {
        if name.eq_ignore_ascii_case("VP8") {
            VideoCodec::Vp8
        } else if name.eq_ignore_ascii_case("H264") {
            VideoCodec::H264
        } else if name.eq_ignore_ascii_case("VP9") {
            VideoCodec::Vp9
        } else if name.eq_ignore_ascii_case("AV1") {
            VideoCodec::Av1
        } else {
            VideoCodec::Other
        }
    }
}

/// A room's video codec policy: the codecs publishers may send, most preferred first. Empty:
/// every codec the server forwards, in the order each publisher prefers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VideoCodecs(Vec<VideoCodec>);

impl VideoCodecs {
    /// No policy: every codec the server forwards, in each publisher's order.
    pub fn any() -> Self {
        VideoCodecs(Vec::new())
    }

    /// The policy named by `names` (`["h264", "vp8"]`, any case); `Err` names the first unknown
    /// or repeated codec.
    pub fn parse<S: AsRef<str>>(names: &[S]) -> Result<Self, String> {
        let mut codecs = Vec::new();
        for name in names {
            let name = name.as_ref();
            let codec = VideoCodec::from_name(name).ok_or_else(|| {
                let known: Vec<&str> = VideoCodec::FORWARDED.iter().map(|c| c.as_str()).collect();
                format!(
                    "unknown video codec {name:?}: the server forwards {}",
                    known.join(", ")
                )
            })?;
            if codecs.contains(&codec) {
                return Err(format!("video codec {name:?} is listed twice"));
            }
            codecs.push(codec);
        }
        Ok(VideoCodecs(codecs))
    }

    /// The codecs, most preferred first (empty: any).
    pub fn codecs(&self) -> &[VideoCodec] {
        &self.0
    }

    /// The names, most preferred first (empty: any).
    pub fn names(&self) -> Vec<String> {
        self.0.iter().map(|c| c.as_str().to_owned()).collect()
    }

    /// Whether there is no policy.
    pub fn is_any(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether publishers may send `codec`.
    pub fn allows(&self, codec: VideoCodec) -> bool {
        match codec {
            VideoCodec::Other => false,
            c if self.0.is_empty() => VideoCodec::FORWARDED.contains(&c),
            c => self.0.contains(&c),
        }
    }

    /// Where `codec` stands in the order of preference (all equal without a policy).
    fn rank(&self, codec: VideoCodec) -> usize {
        self.0.iter().position(|c| *c == codec).unwrap_or(0)
    }

    /// The codecs publishers may send, for messages (`VP8 or H.264`, `VP8, H.264 or VP9`).
    pub fn describe(&self) -> String {
        let list: &[VideoCodec] = if self.0.is_empty() {
            &VideoCodec::FORWARDED
        } else {
            &self.0
        };
        let names: Vec<&str> = list
            .iter()
            .map(|c| match c {
                VideoCodec::Vp8 => "VP8",
                VideoCodec::H264 => "H.264",
                VideoCodec::Vp9 => "VP9",
                VideoCodec::Av1 => "AV1",
                VideoCodec::Other => "other",
            })
            .collect();
        match names.split_last() {
            Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
            _ => names.join(""),
        }
    }
}

/// An SDP text cut into its session part and its media sections, to edit and put back together
/// with the line ending it came with.
struct Sdp {
    eol: &'static str,
    head: Vec<String>,
    sections: Vec<Section>,
}

/// One media section: its `m=` line and the lines up to the next one.
struct Section {
    lines: Vec<String>,
}

/// What an `a=` line says about a payload type, if it is one that names one (`rtpmap`, `fmtp`,
/// `rtcp-fb`).
fn attribute_pt(line: &str) -> Option<u8> {
    let rest = ["a=rtpmap:", "a=fmtp:", "a=rtcp-fb:"]
        .iter()
        .find_map(|p| line.strip_prefix(p))?;
    rest.split(|c: char| c.is_ascii_whitespace())
        .next()?
        .parse()
        .ok()
}

impl Sdp {
    fn parse(text: &str) -> Sdp {
        let eol = if text.contains("\r\n") { "\r\n" } else { "\n" };
        let mut sdp = Sdp {
            eol,
            head: Vec::new(),
            sections: Vec::new(),
        };
        for line in text.lines().filter(|l| !l.is_empty()) {
            if line.starts_with("m=") {
                sdp.sections.push(Section {
                    lines: vec![line.to_owned()],
                });
            } else if let Some(s) = sdp.sections.last_mut() {
                s.lines.push(line.to_owned());
            } else {
                sdp.head.push(line.to_owned());
            }
        }
        sdp
    }

    fn render(&self) -> String {
        let mut out = String::new();
        for line in self
            .head
            .iter()
            .chain(self.sections.iter().flat_map(|s| s.lines.iter()))
        {
            out.push_str(line);
            out.push_str(self.eol);
        }
        out
    }

    fn section(&self, mid: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.mid() == Some(mid))
    }
}

impl Section {
    fn is_video(&self) -> bool {
        self.lines[0].starts_with("m=video ")
    }

    fn is_audio(&self) -> bool {
        self.lines[0].starts_with("m=audio ")
    }

    /// In an SDP of the server (answer or offer): whether the server receives on it
    /// (`recvonly` or `sendrecv`, the default).
    fn server_receives(&self) -> bool {
        !self
            .lines
            .iter()
            .any(|l| l == "a=sendonly" || l == "a=inactive")
    }

    /// Lists RED (redundant audio) first on an audio m-line that has it and Opus, the other
    /// codecs in their order after it: a browser sends with the first codec it is given, and
    /// sends Opus with redundancy only when RED comes first.
    fn red_first(&mut self) -> bool {
        let primaries = self.primaries();
        let is = |pt: &u8, name: &str| {
            self.encoding(*pt)
                .is_some_and(|e| e.eq_ignore_ascii_case(name))
        };
        let Some(red) = primaries.iter().copied().find(|pt| is(pt, "red")) else {
            return false;
        };
        if primaries.first() == Some(&red) || !primaries.iter().any(|pt| is(pt, "opus")) {
            return false;
        }
        let mut order = vec![red];
        order.extend(primaries.iter().copied().filter(|pt| *pt != red));
        self.keep(&order);
        true
    }

    fn mid(&self) -> Option<&str> {
        self.lines
            .iter()
            .find_map(|l| l.strip_prefix("a=mid:"))
            .map(str::trim)
    }

    /// Whether the other side sends on it (`sendonly` or `sendrecv`, the default).
    fn sends(&self) -> bool {
        !self
            .lines
            .iter()
            .any(|l| l == "a=recvonly" || l == "a=inactive")
    }

    fn set_inactive(&mut self) {
        for l in &mut self.lines {
            if matches!(l.as_str(), "a=sendonly" | "a=sendrecv" | "a=recvonly") {
                *l = "a=inactive".to_owned();
                return;
            }
        }
        self.lines.push("a=inactive".to_owned());
    }

    /// The payload types of the `m=` line, in its order.
    fn pts(&self) -> Vec<u8> {
        self.lines[0]
            .split_ascii_whitespace()
            .skip(3)
            .filter_map(|t| t.parse().ok())
            .collect()
    }

    /// The encoding name of `pt` (`VP8`, `H264`, `rtx`, ...).
    fn encoding(&self, pt: u8) -> Option<&str> {
        let prefix = format!("a=rtpmap:{pt} ");
        self.lines
            .iter()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.split('/').next())
            .map(str::trim)
    }

    /// The payload type a retransmission payload type `pt` repairs (`apt=`).
    fn apt(&self, pt: u8) -> Option<u8> {
        let prefix = format!("a=fmtp:{pt} ");
        let params = self.lines.iter().find_map(|l| l.strip_prefix(&prefix))?;
        params
            .split(';')
            .find_map(|p| p.trim().strip_prefix("apt="))
            .and_then(|v| v.trim().parse().ok())
    }

    fn is_rtx(&self, pt: u8) -> bool {
        self.encoding(pt)
            .is_some_and(|e| e.eq_ignore_ascii_case("rtx"))
    }

    /// The payload types that carry media (not retransmissions), in the `m=` line's order.
    fn primaries(&self) -> Vec<u8> {
        self.pts()
            .into_iter()
            .filter(|pt| !self.is_rtx(*pt))
            .collect()
    }

    fn codec(&self, pt: u8) -> VideoCodec {
        self.encoding(pt)
            .map_or(VideoCodec::Other, VideoCodec::from_encoding)
    }

    /// Lists `primaries` in this order, each followed by its retransmission payload types, and
    /// drops every other payload type with its `rtpmap`, `fmtp` and `rtcp-fb` lines. The lines
    /// of each payload type move into the same order: some readers take the order of the
    /// `rtpmap` lines rather than the `m=` line's.
    fn keep(&mut self, primaries: &[u8]) {
        let all = self.pts();
        let mut pts = Vec::new();
        for &p in primaries {
            pts.push(p);
            pts.extend(
                all.iter()
                    .copied()
                    .filter(|r| self.is_rtx(*r) && self.apt(*r) == Some(p)),
            );
        }
        let head: Vec<&str> = self.lines[0].split_ascii_whitespace().take(3).collect();
        let mut m = head.join(" ");
        for pt in &pts {
            m.push(' ');
            m.push_str(&pt.to_string());
        }
        self.lines[0] = m;
        let at = self
            .lines
            .iter()
            .position(|l| attribute_pt(l).is_some())
            .unwrap_or(self.lines.len());
        let mut codec_lines = Vec::new();
        let mut rest = Vec::with_capacity(self.lines.len());
        for line in self.lines.drain(..) {
            match attribute_pt(&line) {
                Some(pt) => codec_lines.push((pt, line)),
                None => rest.push(line),
            }
        }
        let ordered = pts.iter().flat_map(|pt| {
            codec_lines
                .iter()
                .filter(move |(p, _)| p == pt)
                .map(|(_, l)| l.clone())
        });
        rest.splice(at..at, ordered);
        self.lines = rest;
    }
}

/// A client's offer made ready for str0m.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedOffer {
    /// The SDP to give str0m.
    pub sdp: String,
    /// Sending video m-lines without a codec the room takes, made `inactive` here for the first
    /// time.
    pub refused: Vec<Mid>,
    /// The other video m-lines new to the session: their codecs are ordered in the answer.
    pub new: Vec<Mid>,
}

/// Applies the room's `policy` to a client's offer. On video m-lines that are not `known` to
/// the session yet, codecs the room does not take are removed; a sending one left with none is
/// made `inactive` and listed as refused (only when `may_publish`: otherwise the missing grant
/// refuses it anyway). m-lines `refused` before stay `inactive`. Known m-lines keep what they
/// negotiated the first time and are left alone.
pub fn prepare_offer(
    sdp: &str,
    policy: &VideoCodecs,
    known: impl Fn(Mid) -> bool,
    refused: &[Mid],
    may_publish: bool,
) -> PreparedOffer {
    let mut parsed = Sdp::parse(sdp);
    let (mut newly, mut new) = (Vec::new(), Vec::new());
    for s in parsed.sections.iter_mut().filter(|s| s.is_video()) {
        let Some(mid) = s.mid().map(Mid::from) else {
            continue;
        };
        if refused.contains(&mid) {
            s.set_inactive();
            continue;
        }
        if known(mid) {
            continue;
        }
        let primaries = s.primaries();
        let allowed: Vec<u8> = primaries
            .iter()
            .copied()
            .filter(|pt| policy.allows(s.codec(*pt)))
            .collect();
        if allowed.is_empty() {
            if s.sends() && may_publish && !primaries.is_empty() {
                s.set_inactive();
                newly.push(mid);
            }
            continue;
        }
        new.push(mid);
        if allowed.len() < primaries.len() {
            s.keep(&allowed);
        }
    }
    PreparedOffer {
        sdp: parsed.render(),
        refused: newly,
        new,
    }
}

/// Puts the codecs of the client's video m-lines in str0m's `answer` to its `offer` (as given
/// to str0m) in order. An m-line with an order in `fixed` keeps it (the publisher goes on
/// sending what it sent); one of the `new` ones gets the codecs the `policy` allows, in its
/// order of preference and then in the offer's. Others (the server's own m-lines, refused ones)
/// are left alone. On the audio m-lines the client sends on, RED (when offered) comes before
/// Opus, so that browsers send redundant audio. Returns the answer and the order chosen for each
/// new m-line (payload types of the codecs, the one to send first).
pub fn shape_answer(
    answer: &str,
    offer: &str,
    policy: &VideoCodecs,
    fixed: &HashMap<Mid, Vec<Pt>>,
    new: &[Mid],
) -> (String, Vec<(Mid, Vec<Pt>)>) {
    let offer = Sdp::parse(offer);
    let mut parsed = Sdp::parse(answer);
    red_first_where_clients_send(&mut parsed);
    let mut chosen = Vec::new();
    for s in parsed.sections.iter_mut().filter(|s| s.is_video()) {
        let Some(mid) = s.mid().map(Mid::from) else {
            continue;
        };
        let primaries = s.primaries();
        let order: Vec<u8> = match fixed.get(&mid) {
            Some(order) => order
                .iter()
                .map(|pt| **pt)
                .filter(|pt| primaries.contains(pt))
                .collect(),
            None if !new.contains(&mid) => continue,
            None => {
                let offered = offer.section(&mid).map(Section::pts).unwrap_or_default();
                let mut order: Vec<u8> = primaries
                    .iter()
                    .copied()
                    .filter(|pt| policy.allows(s.codec(*pt)))
                    .collect();
                order.sort_by_key(|pt| {
                    let at = offered.iter().position(|o| o == pt).unwrap_or(usize::MAX);
                    (policy.rank(s.codec(*pt)), at)
                });
                if !order.is_empty() {
                    chosen.push((mid, order.iter().map(|pt| Pt::from(*pt)).collect()));
                }
                order
            }
        };
        if !order.is_empty() {
            s.keep(&order);
        }
    }
    (parsed.render(), chosen)
}

/// RED first on the audio m-lines the client sends on (in an answer or offer of the server),
/// so that a browser that offered RED sends its audio with redundancy.
fn red_first_where_clients_send(sdp: &mut Sdp) -> bool {
    let mut changed = false;
    for s in sdp
        .sections
        .iter_mut()
        .filter(|s| s.is_audio() && s.server_receives())
    {
        changed |= s.red_first();
    }
    changed
}

/// Puts the codecs of a client's own video m-lines in a server offer back in the order they
/// were answered in (`orders`, by m-line): str0m lists them in its own order, and a browser
/// that answers the offer sends the first one it is offered. The client's audio m-lines list RED
/// first, as in the answer.
pub fn keep_orders(sdp: &str, orders: &HashMap<Mid, Vec<Pt>>) -> String {
    let mut parsed = Sdp::parse(sdp);
    if !red_first_where_clients_send(&mut parsed) && orders.is_empty() {
        return sdp.to_owned();
    }
    for s in parsed.sections.iter_mut().filter(|s| s.is_video()) {
        let Some(order) = s.mid().map(Mid::from).and_then(|mid| orders.get(&mid)) else {
            continue;
        };
        let primaries = s.primaries();
        let order: Vec<u8> = order
            .iter()
            .map(|pt| **pt)
            .filter(|pt| primaries.contains(pt))
            .collect();
        if !order.is_empty() {
            s.keep(&order);
        }
    }
    parsed.render()
}

/// Leaves on the video m-line `mid` of a server offer only the codecs `primaries` (with their
/// retransmission payload types), in that order. Nothing changes if none of them is there.
pub fn restrict_mline(sdp: &str, mid: Mid, primaries: &[Pt]) -> String {
    let mut parsed = Sdp::parse(sdp);
    let Some(s) = parsed
        .sections
        .iter_mut()
        .find(|s| s.is_video() && s.mid().map(Mid::from) == Some(mid))
    else {
        return sdp.to_owned();
    };
    let present = s.pts();
    let keep: Vec<u8> = primaries
        .iter()
        .map(|pt| **pt)
        .filter(|pt| present.contains(pt))
        .collect();
    if keep.is_empty() {
        return sdp.to_owned();
    }
    s.keep(&keep);
    parsed.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    const AUDIO_RED: &str = "v=0\r\ns=-\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111 63\r\na=mid:0\r\na=recvonly\r\n\
        a=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10;useinbandfec=1\r\n\
        a=rtpmap:63 red/48000/2\r\na=fmtp:63 111/111\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111 63\r\na=mid:1\r\na=sendonly\r\n\
        a=rtpmap:111 opus/48000/2\r\na=rtpmap:63 red/48000/2\r\na=fmtp:63 111/111\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:2\r\na=recvonly\r\n\
        a=rtpmap:111 opus/48000/2\r\n";

    #[test]
    fn red_comes_first_where_the_client_sends_audio() {
        let (answer, _) = shape_answer(
            AUDIO_RED,
            AUDIO_RED,
            &VideoCodecs::default(),
            &HashMap::new(),
            &[],
        );
        let sdp = Sdp::parse(&answer);
        // The client's microphone: RED first, its lines moved with it.
        assert_eq!(sdp.sections[0].pts(), vec![63, 111]);
        let lines = &sdp.sections[0].lines;
        let red_at = lines
            .iter()
            .position(|l| l.starts_with("a=rtpmap:63"))
            .unwrap();
        let opus_at = lines
            .iter()
            .position(|l| l.starts_with("a=rtpmap:111"))
            .unwrap();
        assert!(red_at < opus_at, "{lines:?}");
        assert!(lines.contains(&"a=fmtp:111 minptime=10;useinbandfec=1".to_owned()));
        // The server's own sending m-line and one without RED are left alone.
        assert_eq!(sdp.sections[1].pts(), vec![111, 63]);
        assert_eq!(sdp.sections[2].pts(), vec![111]);
        // Later server offers keep it so, with or without video orders; nothing to do is no
        // change at all.
        let offer = keep_orders(AUDIO_RED, &HashMap::new());
        assert_eq!(Sdp::parse(&offer).sections[0].pts(), vec![63, 111]);
        assert_eq!(keep_orders(&offer, &HashMap::new()), offer);
    }

    const OFFER: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
        a=group:BUNDLE 0 1\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=sendonly\r\na=rtpmap:111 opus/48000/2\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103 45 118\r\na=mid:1\r\na=sendonly\r\n\
        a=rtpmap:96 VP8/90000\r\na=rtcp-fb:96 nack\r\na=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\n\
        a=rtpmap:102 H264/90000\r\na=rtcp-fb:102 nack\r\n\
        a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n\
        a=rtpmap:103 rtx/90000\r\na=fmtp:103 apt=102\r\na=rtpmap:45 AV1/90000\r\n\
        a=rtpmap:118 red/90000\r\na=rid:q send\r\n";

    fn m_line(sdp: &str, kind: &str) -> String {
        sdp.lines()
            .find(|l| l.starts_with(&format!("m={kind} ")))
            .unwrap()
            .to_owned()
    }

    fn policy(names: &[&str]) -> VideoCodecs {
        VideoCodecs::parse(names).unwrap()
    }

    #[test]
    fn policies_parse_names_in_any_case_and_refuse_unknown_or_repeated_ones() {
        assert_eq!(
            policy(&["H264", "vp8"]).codecs(),
            &[VideoCodec::H264, VideoCodec::Vp8]
        );
        assert_eq!(policy(&["h264", "vp8"]).names(), ["h264", "vp8"]);
        assert!(VideoCodecs::parse(&["h265"]).unwrap_err().contains("h265"));
        assert_eq!(policy(&["AV1"]).codecs(), &[VideoCodec::Av1]);
        assert_eq!(policy(&["VP9", "vp8"]).names(), ["vp9", "vp8"]);
        assert!(VideoCodecs::any().allows(VideoCodec::Vp9));
        assert!(!policy(&["vp9"]).allows(VideoCodec::Vp8));
        assert!(VideoCodecs::parse(&["vp8", "VP8"])
            .unwrap_err()
            .contains("twice"));
        assert!(VideoCodecs::any().allows(VideoCodec::H264));
        assert!(!VideoCodecs::any().allows(VideoCodec::Other));
        assert!(!policy(&["vp8"]).allows(VideoCodec::H264));
        assert_eq!(policy(&["h264"]).describe(), "H.264");
        assert_eq!(policy(&["vp9", "h264"]).describe(), "VP9 or H.264");
        assert_eq!(VideoCodecs::any().describe(), "VP8, H.264, VP9 or AV1");
    }

    #[test]
    fn offers_lose_the_codecs_the_room_does_not_take_on_new_mlines_only() {
        let p = prepare_offer(OFFER, &policy(&["vp8"]), |_| false, &[], true);
        assert_eq!(m_line(&p.sdp, "video"), "m=video 9 UDP/TLS/RTP/SAVPF 96 97");
        assert!(!p.sdp.contains("H264") && !p.sdp.contains("apt=102"));
        assert!(p.sdp.contains("a=rtcp-fb:96 nack\r\n") && p.sdp.contains("a=rid:q send"));
        assert!(p.refused.is_empty());
        // The m-line is known: left as it is.
        let p = prepare_offer(OFFER, &policy(&["vp8"]), |_| true, &[], true);
        assert_eq!(p.sdp, OFFER);
        // Without a policy only what the server does not forward goes.
        let p = prepare_offer(OFFER, &VideoCodecs::any(), |_| false, &[], true);
        assert_eq!(
            m_line(&p.sdp, "video"),
            "m=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103 45"
        );
        assert_eq!(m_line(&p.sdp, "audio"), "m=audio 9 UDP/TLS/RTP/SAVPF 111");
    }

    #[test]
    fn a_sending_mline_without_an_allowed_codec_is_made_inactive_and_stays_so() {
        let vp8_only = OFFER.replace(" 102 103 45 118", "");
        let p = prepare_offer(&vp8_only, &policy(&["h264"]), |_| false, &[], true);
        assert_eq!(p.refused, vec![Mid::from("1")]);
        assert!(p.sdp.contains("a=mid:1\r\na=inactive\r\n"), "{}", p.sdp);
        assert!(p.sdp.contains("a=mid:0\r\na=sendonly\r\n"));
        // Later offers: still inactive, not refused again.
        let again = prepare_offer(OFFER, &policy(&["h264"]), |_| true, &p.refused, true);
        assert!(again.sdp.contains("a=mid:1\r\na=inactive\r\n"));
        assert!(again.refused.is_empty());
        // Without the publish grant the grant refuses it.
        let p = prepare_offer(&vp8_only, &policy(&["h264"]), |_| false, &[], false);
        assert!(p.refused.is_empty());
    }

    #[test]
    fn answers_follow_the_policy_then_the_offer_and_keep_their_order() {
        // str0m's answer lists its own order: VP8 first.
        let answer = "v=0\r\ns=-\r\nm=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103 104\r\na=mid:1\r\n\
            a=recvonly\r\na=rtpmap:96 VP8/90000\r\na=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\n\
            a=rtpmap:102 H264/90000\r\na=fmtp:102 packetization-mode=1\r\n\
            a=rtpmap:103 rtx/90000\r\na=fmtp:103 apt=102\r\na=rtpmap:104 H264/90000\r\n";
        let h264_first = "m=video 9 UDP/TLS/RTP/SAVPF 104 102 103 96 97\r\na=mid:1\r\n";
        let (sdp, chosen) = shape_answer(
            answer,
            h264_first,
            &VideoCodecs::any(),
            &HashMap::new(),
            &[Mid::from("1")],
        );
        assert_eq!(
            m_line(&sdp, "video"),
            "m=video 9 UDP/TLS/RTP/SAVPF 104 102 103 96 97"
        );
        assert_eq!(
            chosen,
            vec![(Mid::from("1"), vec![104.into(), 102.into(), 96.into()])]
        );
        // The room prefers VP8.
        let (sdp, _) = shape_answer(
            answer,
            h264_first,
            &policy(&["vp8", "h264"]),
            &HashMap::new(),
            &[Mid::from("1")],
        );
        assert_eq!(
            m_line(&sdp, "video"),
            "m=video 9 UDP/TLS/RTP/SAVPF 96 97 104 102 103"
        );
        // The room takes H.264 only.
        let (sdp, _) = shape_answer(
            answer,
            h264_first,
            &policy(&["h264"]),
            &HashMap::new(),
            &[Mid::from("1")],
        );
        assert_eq!(
            m_line(&sdp, "video"),
            "m=video 9 UDP/TLS/RTP/SAVPF 104 102 103"
        );
        assert!(!sdp.contains("VP8") && !sdp.contains("apt=96"));
        // A known m-line keeps its order, whatever the policy says now.
        let fixed = HashMap::from([(Mid::from("1"), vec![Pt::from(96), Pt::from(102)])]);
        let (sdp, chosen) = shape_answer(answer, h264_first, &policy(&["h264"]), &fixed, &[]);
        assert_eq!(
            m_line(&sdp, "video"),
            "m=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103"
        );
        assert!(chosen.is_empty());
        // An m-line neither new nor known (the server's own) is left as str0m made it.
        let (sdp, chosen) =
            shape_answer(answer, h264_first, &policy(&["h264"]), &HashMap::new(), &[]);
        assert_eq!(sdp, answer);
        assert!(chosen.is_empty());
    }

    #[test]
    fn codec_lines_move_with_the_order_and_server_offers_keep_the_answered_order() {
        // str0m's offer: VP8 first, in the m= line and in the rtpmap lines.
        let offer = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103\r\na=mid:1\r\n\
            a=recvonly\r\na=rtpmap:96 VP8/90000\r\na=rtcp-fb:96 nack\r\na=rtpmap:97 rtx/90000\r\n\
            a=fmtp:97 apt=96\r\na=rtpmap:102 H264/90000\r\na=fmtp:102 packetization-mode=1\r\n\
            a=rtpmap:103 rtx/90000\r\na=fmtp:103 apt=102\r\na=ssrc:1 cname:x\r\n";
        let orders = HashMap::from([(Mid::from("1"), vec![Pt::from(102), Pt::from(96)])]);
        let sdp = keep_orders(offer, &orders);
        let lines: Vec<&str> = sdp.lines().collect();
        assert_eq!(lines[1], "m=video 9 UDP/TLS/RTP/SAVPF 102 103 96 97");
        assert_eq!(
            lines[4..],
            [
                "a=rtpmap:102 H264/90000",
                "a=fmtp:102 packetization-mode=1",
                "a=rtpmap:103 rtx/90000",
                "a=fmtp:103 apt=102",
                "a=rtpmap:96 VP8/90000",
                "a=rtcp-fb:96 nack",
                "a=rtpmap:97 rtx/90000",
                "a=fmtp:97 apt=96",
                "a=ssrc:1 cname:x",
            ]
        );
        assert_eq!(keep_orders(offer, &HashMap::new()), offer);
        let other = HashMap::from([(Mid::from("2"), vec![Pt::from(102)])]);
        assert_eq!(keep_orders(offer, &other), offer);
    }

    #[test]
    fn server_offers_keep_one_codec_on_the_named_mline() {
        let sdp = restrict_mline(OFFER, Mid::from("1"), &[Pt::from(102)]);
        assert_eq!(m_line(&sdp, "video"), "m=video 9 UDP/TLS/RTP/SAVPF 102 103");
        assert!(sdp.contains("profile-level-id=42e01f") && !sdp.contains("VP8"));
        assert_eq!(
            restrict_mline(OFFER, Mid::from("1"), &[Pt::from(35)]),
            OFFER
        );
        assert_eq!(
            restrict_mline(OFFER, Mid::from("7"), &[Pt::from(102)]),
            OFFER
        );
    }
}
