//! ICE servers handed to clients on join: STUN URLs as they are, TURN URLs with time-limited
//! credentials in the scheme coturn calls `use-auth-secret` (the "TURN REST API"):
//!
//! - username = `<expiry, UNIX seconds>:<identity>`
//! - password = base64(HMAC-SHA1(shared secret, username))
//!
//! The TURN server checks the HMAC with the same secret (`static-auth-secret`) and refuses the
//! credential after the expiry, so nothing has to be provisioned per user.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;

use signal::protocol::IceServer;

/// STUN/TURN servers and the TURN secret.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TurnConfig {
    /// `turn:` / `turns:` URLs (all served by TURN servers sharing `secret`).
    pub urls: Vec<String>,
    /// `stun:` / `stuns:` URLs, given without credentials.
    pub stun_urls: Vec<String>,
    /// The shared secret (coturn's `static-auth-secret`).
    pub secret: Option<String>,
    /// How long a credential is valid.
    pub ttl: Duration,
}

impl TurnConfig {
    /// The ICE servers for a participant known as `identity`, at time `now`.
    pub fn ice_servers(&self, identity: &str, now: SystemTime) -> Vec<IceServer> {
        let mut out = Vec::new();
        if !self.stun_urls.is_empty() {
            out.push(IceServer {
                urls: self.stun_urls.clone(),
                username: None,
                credential: None,
            });
        }
        if let (false, Some(secret)) = (self.urls.is_empty(), &self.secret) {
            let expiry = now
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .saturating_add(self.ttl)
                .as_secs();
            // A colon would end the expiry part early in the TURN server's parsing.
            let identity: String = identity.chars().filter(|c| *c != ':').collect();
            let username = format!("{expiry}:{identity}");
            out.push(IceServer {
                urls: self.urls.clone(),
                credential: Some(password(secret, &username)),
                username: Some(username),
            });
        }
        out
    }
}

/// base64(HMAC-SHA1(secret, username)).
pub fn password(secret: &str, username: &str) -> String {
    // HMAC takes keys of any length.
    let mut mac = Hmac::<Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC accepts any key");
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Checks URLs: TURN ones start with `turn:` or `turns:`, STUN ones with `stun:` or `stuns:`.
pub fn check_urls(urls: &[String], schemes: &[&str]) -> Result<(), String> {
    for (i, u) in urls.iter().enumerate() {
        let ok = schemes
            .iter()
            .any(|s| u.strip_prefix(s).is_some_and(|rest| rest.len() > 1));
        if !ok {
            return Err(format!(
                "[{i}] `{u}` must start with {}",
                schemes.join(" or ")
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_follow_the_turn_rest_scheme() {
        // Reference value computed independently with Python's hmac/hashlib/base64.
        assert_eq!(
            password("north-sea-secret", "1700003600:alice"),
            "XNu2e1NVrQEGzUB75NhB3SrIHpE="
        );
        let c = TurnConfig {
            urls: vec!["turn:turn.example.org:3478?transport=udp".into()],
            stun_urls: vec!["stun:turn.example.org:3478".into()],
            secret: Some("north-sea-secret".into()),
            ttl: Duration::from_secs(3600),
        };
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let servers = c.ice_servers("ali:ce", now);
        assert_eq!(servers.len(), 2);
        assert_eq!(servers[0].username, None);
        assert_eq!(servers[1].username.as_deref(), Some("1700003600:alice"));
        assert_eq!(
            servers[1].credential.as_deref(),
            Some("XNu2e1NVrQEGzUB75NhB3SrIHpE=")
        );
    }

    #[test]
    fn nothing_configured_gives_nothing() {
        assert!(TurnConfig::default()
            .ice_servers("a", SystemTime::now())
            .is_empty());
        let no_secret = TurnConfig {
            urls: vec!["turn:x:3478".into()],
            ..TurnConfig::default()
        };
        assert!(no_secret.ice_servers("a", SystemTime::now()).is_empty());
    }

    #[test]
    fn urls_are_checked() {
        let turn = ["turn:", "turns:"];
        assert!(check_urls(&["turns:a:5349?transport=tcp".into()], &turn).is_ok());
        assert!(check_urls(&["http://a".into()], &turn).is_err());
        assert!(check_urls(&["turn:".into()], &turn).is_err());
    }
}
