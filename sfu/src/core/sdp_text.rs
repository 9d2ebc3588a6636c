//! Touches to the SDP text the server sends.
//!
//! The server never trickles: every candidate it has is in its SDP, in the first m-line of the
//! BUNDLE group. [`end_candidates`] says so with `a=end-of-candidates` (RFC 8840) after the last
//! one, so that a client waits for no more (some ICE agents, aiortc's among them, do not conclude
//! their checks without it).

/// Adds `a=end-of-candidates` after the last `a=candidate` line, unless it is there already or
/// there is no candidate.
pub(crate) fn end_candidates(sdp: &mut String) {
    if sdp.contains("a=end-of-candidates") {
        return;
    }
    let Some(start) = sdp.rfind("a=candidate:") else {
        return;
    };
    let newline = if sdp.contains("\r\n") { "\r\n" } else { "\n" };
    let end = match sdp[start..].find('\n') {
        Some(i) => start + i + 1,
        None => {
            sdp.push_str(newline);
            sdp.len()
        }
    };
    sdp.insert_str(end, &format!("a=end-of-candidates{newline}"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_the_last_candidate_of_the_first_m_line() {
        let mut sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
                       a=candidate:1 1 udp 2130706175 203.0.113.10 50000 typ host\r\n\
                       a=candidate:2 1 tcp 2105458943 203.0.113.10 50000 typ host tcptype passive\r\n\
                       a=mid:0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\n"
            .to_string();
        end_candidates(&mut sdp);
        assert!(
            sdp.contains("tcptype passive\r\na=end-of-candidates\r\na=mid:0\r\n"),
            "{sdp}"
        );
        assert_eq!(sdp.matches("a=end-of-candidates").count(), 1);
        // Once is enough.
        let before = sdp.clone();
        end_candidates(&mut sdp);
        assert_eq!(sdp, before);
    }

    #[test]
    fn without_candidates_nothing_changes() {
        let mut sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n".to_string();
        end_candidates(&mut sdp);
        assert!(!sdp.contains("end-of-candidates"));
    }

    #[test]
    fn a_candidate_on_the_last_line_gets_a_line_break_first() {
        let mut sdp = "v=0\r\na=candidate:1 1 udp 1 192.0.2.1 5000 typ host".to_string();
        end_candidates(&mut sdp);
        assert!(
            sdp.ends_with("typ host\r\na=end-of-candidates\r\n"),
            "{sdp}"
        );
    }
}
