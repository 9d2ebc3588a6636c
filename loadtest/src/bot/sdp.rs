//! Small reads and edits of SDP text that str0m does not offer.

use std::net::IpAddr;

/// `sdp` without the `a=candidate` lines whose address is not on the loopback network, so that
/// ICE never sends a check anywhere else.
pub fn keep_loopback_candidates(sdp: &str) -> String {
    keep_candidates(sdp, &[])
}

/// `sdp` without the `a=candidate` lines whose address is neither on the loopback network nor
/// one of `also`.
pub fn keep_candidates(sdp: &str, also: &[IpAddr]) -> String {
    sdp.split_inclusive('\n')
        .filter(|line| match line.strip_prefix("a=candidate:") {
            Some(rest) => rest
                .split_whitespace()
                .nth(4)
                .and_then(|a| a.parse::<IpAddr>().ok())
                .is_some_and(|ip| ip.is_loopback() || also.contains(&ip)),
            None => true,
        })
        .collect()
}

/// Whether the m-section with `a=mid:{mid}` of an answer receives simulcast
/// (`a=simulcast:recv ...`).
pub fn answer_receives_simulcast(sdp: &str, mid: &str) -> bool {
    let mut this_mid = false;
    let mut simulcast = false;
    for line in sdp.lines().map(str::trim_end) {
        if line.starts_with("m=") {
            if this_mid && simulcast {
                return true;
            }
            this_mid = false;
            simulcast = false;
        } else if let Some(m) = line.strip_prefix("a=mid:") {
            this_mid = m == mid;
        } else if let Some(s) = line.strip_prefix("a=simulcast:") {
            simulcast = s.trim_start().starts_with("recv");
        }
    }
    this_mid && simulcast
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_candidates_stay() {
        let sdp = "v=0\r\n\
                   a=candidate:1 1 udp 2130706431 10.1.2.3 50000 typ host\r\n\
                   a=candidate:2 1 udp 2130706431 127.0.0.1 50000 typ host\r\n\
                   a=candidate:3 1 udp 2130706431 ::1 50000 typ host\r\n\
                   a=candidate:4 1 udp 2130706431 host.local 50000 typ host\r\n\
                   a=mid:0\r\n";
        let kept = keep_loopback_candidates(sdp);
        assert_eq!(
            kept,
            "v=0\r\n\
             a=candidate:2 1 udp 2130706431 127.0.0.1 50000 typ host\r\n\
             a=candidate:3 1 udp 2130706431 ::1 50000 typ host\r\n\
             a=mid:0\r\n"
        );
        let also = keep_candidates(sdp, &["10.1.2.3".parse().unwrap()]);
        assert!(also.contains("10.1.2.3") && also.contains("127.0.0.1"));
        assert!(!also.contains("host.local"));
    }

    #[test]
    fn simulcast_is_found_per_m_line() {
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n\
                   m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=rid:q recv\r\n\
                   a=simulcast:recv q;h;f\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:2\r\n";
        assert!(answer_receives_simulcast(sdp, "1"));
        assert!(!answer_receives_simulcast(sdp, "0"));
        assert!(!answer_receives_simulcast(sdp, "2"));
        assert!(!answer_receives_simulcast(sdp, "9"));
        let send = "m=video 9 X 96\r\na=mid:1\r\na=simulcast:send q;h\r\n";
        assert!(!answer_receives_simulcast(send, "1"));
        let last = "m=video 9 X 96\r\na=simulcast:recv q;h\r\na=mid:1\r\n";
        assert!(answer_receives_simulcast(last, "1"));
    }
}
