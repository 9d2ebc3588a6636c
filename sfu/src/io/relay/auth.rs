//! The signatures that authenticate the offers and answers of relay connections.

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header carrying a request's or an answer's signature: `{unix seconds}.{hex HMAC}`.
pub const AUTH_HEADER: &str = "sfu-relay-auth";
/// How far a signature's time may be from this node's clock.
pub(super) const AUTH_WINDOW: Duration = Duration::from_secs(30);

type HmacSha256 = Hmac<Sha256>;

pub(super) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `{t}.{hex hmac(secret, "{t}." + body)}`.
pub fn sign(secret: &[u8], t: u64, body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    let tag = mac.finalize().into_bytes();
    let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
    format!("{t}.{hex}")
}

/// Whether `header` signs `body` with `secret`, at a time within 30 s (`AUTH_WINDOW`) of `now`.
pub fn verify(secret: &[u8], header: &str, body: &[u8], now: u64) -> bool {
    let Some((t, hex)) = header.split_once('.') else {
        return false;
    };
    let Ok(t) = t.parse::<u64>() else {
        return false;
    };
    if t.abs_diff(now) > AUTH_WINDOW.as_secs() || hex.len() != 64 {
        return false;
    }
    let Some(tag) = (0..32)
        .map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()
    else {
        return false;
    };
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    mac.verify_slice(&tag).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_bind_the_secret_the_body_and_the_time() {
        let secret = b"a-cluster-secret-of-at-least-32-characters";
        let now = 1_800_000_000;
        let body = br#"{"from":"n1","room":"r","offer":"v=0"}"#;
        let header = sign(secret, now, body);
        assert!(verify(secret, &header, body, now));
        assert!(
            verify(secret, &header, body, now + 30),
            "a little clock skew"
        );
        assert!(
            !verify(secret, &header, body, now + 31),
            "too old: replayed"
        );
        assert!(!verify(secret, &header, body, now - 31), "from the future");
        assert!(!verify(
            b"another-secret-of-at-least-32-characters",
            &header,
            body,
            now
        ));
        assert!(!verify(
            secret,
            &header,
            br#"{"from":"n2","room":"r","offer":"v=0"}"#,
            now
        ));
        let (t, mac) = header.split_once('.').unwrap();
        assert!(
            !verify(secret, &format!("{}.{mac}", now + 1), body, now),
            "time changed"
        );
        for bad in [
            "",
            ".",
            "x.y",
            &format!("{t}."),
            &format!("{t}.{}", &mac[..62]),
            &format!("{t}.{}zz", &mac[..62]),
        ] {
            assert!(!verify(secret, bad, body, now), "{bad:?}");
        }
    }
}
