//! STUN messages (RFC 8489) as an attacker writes them: binding requests with any USERNAME and
//! a bogus MESSAGE-INTEGRITY, and a reader for what comes back.

/// The magic cookie.
const COOKIE: u32 = 0x2112_A442;
const BINDING_REQUEST: u16 = 0x0001;
const BINDING_SUCCESS: u16 = 0x0101;
const BINDING_ERROR: u16 = 0x0111;
const USERNAME: u16 = 0x0006;
const MESSAGE_INTEGRITY: u16 = 0x0008;
const ERROR_CODE: u16 = 0x0009;
const PRIORITY: u16 = 0x0024;
const USE_CANDIDATE: u16 = 0x0025;
const FINGERPRINT: u16 = 0x8028;
const ICE_CONTROLLING: u16 = 0x802A;
/// FINGERPRINT is the CRC-32 XOR this.
const FINGERPRINT_XOR: u32 = 0x5354_554E;

/// CRC-32 (IEEE, reflected), bit by bit: a few hundred datagrams a second need no table.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

fn attr(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&(value.len() as u16).to_be_bytes());
    out.extend_from_slice(value);
    out.resize(out.len().next_multiple_of(4), 0);
}

fn set_length(msg: &mut [u8], body: usize) {
    msg[2..4].copy_from_slice(&(body as u16).to_be_bytes());
}

/// A binding request as a controlling ICE agent nominating the pair sends it, with `username`
/// (at most 255 bytes are used), the given `integrity` bytes where the HMAC belongs, and a
/// correct FINGERPRINT.
pub fn binding_request(
    txid: [u8; 12],
    username: &str,
    priority: u32,
    tiebreaker: u64,
    integrity: [u8; 20],
) -> Vec<u8> {
    let mut m = Vec::with_capacity(128);
    m.extend_from_slice(&BINDING_REQUEST.to_be_bytes());
    m.extend_from_slice(&[0, 0]);
    m.extend_from_slice(&COOKIE.to_be_bytes());
    m.extend_from_slice(&txid);
    let name = username.as_bytes();
    attr(&mut m, USERNAME, &name[..name.len().min(255)]);
    attr(&mut m, PRIORITY, &priority.to_be_bytes());
    attr(&mut m, ICE_CONTROLLING, &tiebreaker.to_be_bytes());
    attr(&mut m, USE_CANDIDATE, &[]);
    attr(&mut m, MESSAGE_INTEGRITY, &integrity);
    // FINGERPRINT covers the message with a length that already includes it.
    let len = m.len() - 20 + 8;
    set_length(&mut m, len);
    let fp = crc32(&m) ^ FINGERPRINT_XOR;
    attr(&mut m, FINGERPRINT, &fp.to_be_bytes());
    m
}

/// What a datagram from the server is, as a counter name.
pub fn classify_reply(data: &[u8]) -> String {
    if data.len() < 20 || data[4..8] != COOKIE.to_be_bytes() {
        return "not stun".into();
    }
    match u16::from_be_bytes([data[0], data[1]]) {
        BINDING_SUCCESS => "stun binding success".into(),
        BINDING_ERROR => match error_code(&data[20..]) {
            Some(code) => format!("stun binding error {code}"),
            None => "stun binding error".into(),
        },
        BINDING_REQUEST => "stun binding request".into(),
        t => format!("stun type 0x{t:04x}"),
    }
}

/// The ERROR-CODE of a STUN message body, if it has one.
fn error_code(mut body: &[u8]) -> Option<u16> {
    // Each turn takes one attribute off the body; it gets shorter every turn.
    while body.len() >= 4 {
        let kind = u16::from_be_bytes([body[0], body[1]]);
        let len = usize::from(u16::from_be_bytes([body[2], body[3]]));
        let value = body.get(4..4 + len)?;
        if kind == ERROR_CODE && value.len() >= 4 {
            return Some(u16::from(value[2] & 0x07) * 100 + u16::from(value[3]));
        }
        body = body.get((4 + len).next_multiple_of(4)..).unwrap_or(&[]);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn binding_request_layout() {
        let m = binding_request([7; 12], "abcd:xyz", 1, 2, [0xAA; 20]);
        assert_eq!(m.len() % 4, 0);
        assert_eq!(&m[0..2], &[0, 1]);
        assert_eq!(usize::from(u16::from_be_bytes([m[2], m[3]])), m.len() - 20);
        assert_eq!(&m[4..8], &COOKIE.to_be_bytes());
        // USERNAME first: type, length 8, then the text.
        assert_eq!(&m[20..24], &[0x00, 0x06, 0x00, 0x08]);
        assert_eq!(&m[24..32], b"abcd:xyz");
        let n = m.len();
        let fp = u32::from_be_bytes([m[n - 4], m[n - 3], m[n - 2], m[n - 1]]);
        assert_eq!(fp, crc32(&m[..n - 8]) ^ FINGERPRINT_XOR);
        assert_eq!(classify_reply(&m), "stun binding request");
    }

    #[test]
    fn replies() {
        let mut err = vec![0x01, 0x11, 0, 8];
        err.extend_from_slice(&COOKIE.to_be_bytes());
        err.extend_from_slice(&[0; 12]);
        err.extend_from_slice(&[0x00, 0x09, 0x00, 0x04, 0, 0, 4, 1]);
        assert_eq!(classify_reply(&err), "stun binding error 401");
        err[0..2].copy_from_slice(&BINDING_SUCCESS.to_be_bytes());
        assert_eq!(classify_reply(&err), "stun binding success");
        assert_eq!(classify_reply(&[0x80; 40]), "not stun");
        assert_eq!(error_code(&[0, 9, 0, 200]), None);
    }
}
