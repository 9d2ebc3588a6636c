//! API keys and access tokens.
//!
//! An operator holds one or more API keys, each with a secret. An access token is a JWT (HS256)
//! signed with the secret of one key and naming that key in `iss`:
//!
//! ```json
//! { "iss": "APIdev42", "sub": "ann@example.com", "name": "Ann", "room": "standup",
//!   "grants": { "join": true, "publish": true, "subscribe": true, "publish_data": true,
//!               "room_admin": false },
//!   "metadata": "{\"team\":\"red\"}", "nbf": 1700000000, "exp": 1700021600 }
//! ```
//!
//! [`KeySet::verify`] checks the signature, `nbf` and `exp` (with [`LEEWAY`]) and refuses a key it
//! does not know. [`KeySet::authorize_join`] adds the checks for entering a room: the token's room
//! must be the room asked for, and it must grant `join`. Every refusal is an [`AuthError`] with a
//! stable message (see `docs/rest-api.md`).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::protocol::{validate_display_name, validate_room_name, ErrorCode, SignalError};

/// Secrets shorter than this are refused: HS256 wants at least 256 bits.
pub const MIN_SECRET_LEN: usize = 32;

/// Clock difference tolerated on `nbf` and `exp`.
pub const LEEWAY: Duration = Duration::from_secs(10);

/// The longest lifetime a minted token may have.
pub const MAX_TTL: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// The lifetime of a token when none is asked for.
pub const DEFAULT_TTL: Duration = Duration::from_secs(6 * 60 * 60);

/// The longest identity, in characters.
pub const MAX_IDENTITY_CHARS: usize = 128;

/// The largest metadata string (room, participant or token), in bytes.
pub const MAX_METADATA_BYTES: usize = 16 * 1024;

/// What a token allows. A grant missing from the token is `false`.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(default)]
pub struct Grants {
    /// May join the token's room.
    pub join: bool,
    /// May publish audio and video.
    pub publish: bool,
    /// May receive the others' tracks.
    pub subscribe: bool,
    /// May send data messages (carried; no data channel yet).
    pub publish_data: bool,
    /// May call the REST API: for the token's room only when the token names one, otherwise for
    /// every room.
    pub room_admin: bool,
}

impl Grants {
    /// The names of the grants, as in tokens and on the command line.
    pub const NAMES: [&'static str; 5] =
        ["join", "publish", "subscribe", "publish_data", "room_admin"];

    /// What a conference participant usually gets: everything but `room_admin`.
    pub fn participant() -> Self {
        Grants {
            join: true,
            publish: true,
            subscribe: true,
            publish_data: true,
            room_admin: false,
        }
    }

    /// Whether every grant of `other` is also one of these.
    pub fn covers(&self, other: &Grants) -> bool {
        let mine = [
            self.join,
            self.publish,
            self.subscribe,
            self.publish_data,
            self.room_admin,
        ];
        let theirs = [
            other.join,
            other.publish,
            other.subscribe,
            other.publish_data,
            other.room_admin,
        ];
        mine.iter().zip(theirs).all(|(m, t)| *m || !t)
    }

    /// These grants and those of `other`.
    pub fn union(&self, other: &Grants) -> Grants {
        Grants {
            join: self.join || other.join,
            publish: self.publish || other.publish,
            subscribe: self.subscribe || other.subscribe,
            publish_data: self.publish_data || other.publish_data,
            room_admin: self.room_admin || other.room_admin,
        }
    }

    /// Only `room_admin`: a token for the REST API.
    pub fn admin() -> Self {
        Grants {
            room_admin: true,
            ..Grants::default()
        }
    }

    /// Every grant.
    pub fn all() -> Self {
        Grants {
            room_admin: true,
            ..Grants::participant()
        }
    }

    /// Parses a comma-separated list of grant names (`join,publish`). Unknown names are refused.
    pub fn parse_list(list: &str) -> Result<Self, String> {
        let mut g = Grants::default();
        for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match name {
                "join" => g.join = true,
                "publish" => g.publish = true,
                "subscribe" => g.subscribe = true,
                "publish_data" => g.publish_data = true,
                "room_admin" => g.room_admin = true,
                other => {
                    return Err(format!(
                        "unknown grant {other:?}; known: {}",
                        Grants::NAMES.join(", ")
                    ))
                }
            }
        }
        Ok(g)
    }
}

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The API key whose secret signed the token.
    pub iss: String,
    /// The participant's identity, chosen by the operator. Required to join.
    #[serde(default)]
    pub sub: String,
    /// Display name. When present it wins over the name in the client's `join`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The room the token is for. Required to join; limits a `room_admin` token to that room.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
    /// What the token allows.
    #[serde(default)]
    pub grants: Grants,
    /// Participant metadata, opaque to the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<String>,
    /// Not valid before (Unix seconds).
    pub nbf: u64,
    /// Expires at (Unix seconds).
    pub exp: u64,
}

/// What to put in a new token; see [`KeySet::mint`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSpec {
    /// `sub`.
    pub identity: String,
    /// `name`.
    pub name: Option<String>,
    /// `room`.
    pub room: Option<String>,
    /// `grants`.
    pub grants: Grants,
    /// `metadata`.
    pub metadata: Option<String>,
    /// How long the token is valid from now.
    pub ttl: Duration,
}

impl TokenSpec {
    /// A participant token for `identity` in `room`, valid for [`DEFAULT_TTL`].
    pub fn participant(room: impl Into<String>, identity: impl Into<String>) -> Self {
        TokenSpec {
            identity: identity.into(),
            name: None,
            room: Some(room.into()),
            grants: Grants::participant(),
            metadata: None,
            ttl: DEFAULT_TTL,
        }
    }

    /// Checks the values; the error names the field at fault.
    pub fn validate(&self) -> Result<(), (&'static str, SignalError)> {
        if self.identity.trim().is_empty()
            || self.identity.chars().count() > MAX_IDENTITY_CHARS
            || self.identity.chars().any(char::is_control)
        {
            return Err((
                "identity",
                invalid(format!(
                    "identity must be 1 to {MAX_IDENTITY_CHARS} printable characters"
                )),
            ));
        }
        if let Some(name) = &self.name {
            validate_display_name(name).map_err(|e| ("name", e))?;
        }
        if let Some(room) = &self.room {
            validate_room_name(room).map_err(|e| ("room", e))?;
        }
        if self.grants.join && self.room.is_none() {
            return Err(("room", invalid("a token that grants join must name a room")));
        }
        if let Some(m) = &self.metadata {
            check_metadata(m).map_err(|e| ("metadata", e))?;
        }
        if self.ttl < Duration::from_secs(1) || self.ttl > MAX_TTL {
            return Err((
                "ttl",
                invalid(format!(
                    "ttl must be between 1 s and {} days",
                    MAX_TTL.as_secs() / 86_400
                )),
            ));
        }
        Ok(())
    }
}

/// Checks a metadata string's size.
pub fn check_metadata(metadata: &str) -> Result<(), SignalError> {
    if metadata.len() > MAX_METADATA_BYTES {
        return Err(invalid(format!(
            "metadata must be at most {MAX_METADATA_BYTES} bytes"
        )));
    }
    Ok(())
}

fn invalid(message: impl Into<String>) -> SignalError {
    SignalError::new(ErrorCode::InvalidRequest, message)
}

/// Why a token was refused. The messages are stable: clients may show them, tests compare them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No token where one is needed.
    #[error("an access token is required")]
    Missing,
    /// The `Authorization` header is not `Bearer <token>`.
    #[error("the Authorization header must be \"Bearer <access token>\"")]
    BadScheme,
    /// Not a JWT, not HS256, or a required claim is missing or of the wrong type.
    #[error("the access token is malformed: {0}")]
    Malformed(String),
    /// `iss` names a key this server does not have.
    #[error("the access token is signed with an unknown API key")]
    UnknownKey,
    /// The signature does not match: a forged or altered token, or the wrong secret.
    #[error("the access token's signature is invalid")]
    BadSignature,
    /// `exp` has passed.
    #[error("the access token has expired")]
    Expired,
    /// `nbf` is still ahead.
    #[error("the access token is not valid yet")]
    NotYetValid,
    /// The token is for another room (or for none, where one is needed).
    #[error("the access token is not valid for this room")]
    WrongRoom,
    /// A grant the operation needs is missing.
    #[error("the access token does not grant {0}")]
    MissingGrant(&'static str),
}

impl AuthError {
    /// `unauthorized` (HTTP 401) for tokens that prove nothing, `forbidden` (HTTP 403) for valid
    /// tokens that do not allow the operation.
    pub fn code(&self) -> ErrorCode {
        match self {
            AuthError::WrongRoom | AuthError::MissingGrant(_) => ErrorCode::Forbidden,
            _ => ErrorCode::Unauthorized,
        }
    }
}

impl From<AuthError> for SignalError {
    fn from(e: AuthError) -> Self {
        SignalError::new(e.code(), e.to_string())
    }
}

/// Why a key could not be added to a [`KeySet`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Empty, too long, or characters other than letters, digits, `-`, `_` and `.`.
    #[error("API key names must be 1 to 64 letters, digits, '-', '_' or '.'")]
    BadName,
    /// Shorter than [`MIN_SECRET_LEN`].
    #[error("the secret must be at least {MIN_SECRET_LEN} characters")]
    ShortSecret,
}

/// The API keys a server accepts, with their secrets. `Debug` shows the key names only.
/// The bearer token of a request's `Authorization` header (RFC 6750): `Missing` without one (or
/// with an empty token), `BadScheme` for any other scheme or a header that is not text.
pub fn bearer_token(headers: &axum::http::HeaderMap) -> Result<&str, AuthError> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or(AuthError::Missing)?;
    let value = value.to_str().map_err(|_| AuthError::BadScheme)?;
    let (scheme, token) = value.split_once(' ').ok_or(AuthError::BadScheme)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::BadScheme);
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(AuthError::Missing);
    }
    Ok(token)
}

#[derive(Clone, Default, PartialEq, Eq)]
pub struct KeySet {
    keys: BTreeMap<String, String>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySet")
            .field("keys", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl KeySet {
    /// No keys.
    pub fn new() -> Self {
        KeySet::default()
    }

    /// A set with one key.
    pub fn single(key: &str, secret: &str) -> Result<Self, KeyError> {
        let mut k = KeySet::new();
        k.insert(key, secret)?;
        Ok(k)
    }

    /// Adds (or replaces) a key.
    pub fn insert(&mut self, key: &str, secret: &str) -> Result<(), KeyError> {
        let ok_name = !key.is_empty()
            && key.len() <= 64
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !ok_name {
            return Err(KeyError::BadName);
        }
        if secret.chars().count() < MIN_SECRET_LEN {
            return Err(KeyError::ShortSecret);
        }
        self.keys.insert(key.to_owned(), secret.to_owned());
        Ok(())
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    /// The secret of `key`.
    pub fn secret(&self, key: &str) -> Option<&str> {
        self.keys.get(key).map(String::as_str)
    }

    /// Signs `claims` with the secret of `claims.iss`.
    pub fn sign(&self, claims: &Claims) -> Result<String, AuthError> {
        let secret = self.secret(&claims.iss).ok_or(AuthError::UnknownKey)?;
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .map_err(|_| AuthError::Malformed("the token could not be signed".into()))
    }

    /// Mints a token with key `key`, valid from now for `spec.ttl`. Returns the token and its
    /// claims. The spec is validated first; the error names the field at fault.
    pub fn mint(
        &self,
        key: &str,
        spec: &TokenSpec,
    ) -> Result<(String, Claims), (&'static str, SignalError)> {
        spec.validate()?;
        let now = unix_now();
        let claims = Claims {
            iss: key.to_owned(),
            sub: spec.identity.clone(),
            name: spec.name.clone(),
            room: spec.room.clone(),
            grants: spec.grants,
            metadata: spec.metadata.clone(),
            nbf: now,
            exp: now + spec.ttl.as_secs(),
        };
        let token = self
            .sign(&claims)
            .map_err(|e| ("iss", SignalError::from(e)))?;
        Ok((token, claims))
    }

    /// Verifies a token: known key, valid signature, `nbf <= now <= exp` (± [`LEEWAY`]).
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        #[derive(Deserialize)]
        struct Issuer {
            iss: Option<String>,
        }
        let unverified = jsonwebtoken::dangerous::insecure_decode::<Issuer>(token)
            .map_err(|e| AuthError::Malformed(describe(e.kind())))?;
        let iss = unverified
            .claims
            .iss
            .ok_or_else(|| AuthError::Malformed("the iss claim is missing".into()))?;
        let secret = self.secret(&iss).ok_or(AuthError::UnknownKey)?;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = LEEWAY.as_secs();
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "nbf", "iss"]);
        let data = jsonwebtoken::decode::<Claims>(
            token,
            &DecodingKey::from_secret(secret.as_bytes()),
            &validation,
        )
        .map_err(|e| match e.kind() {
            ErrorKind::InvalidSignature => AuthError::BadSignature,
            ErrorKind::ExpiredSignature => AuthError::Expired,
            ErrorKind::ImmatureSignature => AuthError::NotYetValid,
            kind => AuthError::Malformed(describe(kind)),
        })?;
        Ok(data.claims)
    }

    /// Verifies a token for joining `room`: valid, for `room`, granting `join`, naming an
    /// identity, and with a valid name and metadata if it has them.
    pub fn authorize_join(&self, token: Option<&str>, room: &str) -> Result<Claims, AuthError> {
        let claims = self.verify(token.ok_or(AuthError::Missing)?)?;
        if claims.room.as_deref() != Some(room) {
            return Err(AuthError::WrongRoom);
        }
        if !claims.grants.join {
            return Err(AuthError::MissingGrant("join"));
        }
        if claims.sub.trim().is_empty() {
            return Err(AuthError::Malformed(
                "the sub claim (identity) is missing".into(),
            ));
        }
        if let Some(name) = &claims.name {
            if validate_display_name(name).is_err() {
                return Err(AuthError::Malformed(
                    "the name claim is not a valid display name".into(),
                ));
            }
        }
        if claims
            .metadata
            .as_deref()
            .is_some_and(|m| check_metadata(m).is_err())
        {
            return Err(AuthError::Malformed(
                "the metadata claim is too large".into(),
            ));
        }
        Ok(claims)
    }
}

/// A short, stable description of a JWT parsing failure (no token text in it).
fn describe(kind: &ErrorKind) -> String {
    match kind {
        ErrorKind::InvalidAlgorithm => "the algorithm must be HS256".into(),
        ErrorKind::MissingRequiredClaim(c) => format!("the {c} claim is missing"),
        ErrorKind::InvalidClaimFormat(c) => format!("the {c} claim has the wrong type"),
        ErrorKind::Json(_) => "the claims are not the expected JSON".into(),
        ErrorKind::Base64(_) | ErrorKind::Utf8(_) | ErrorKind::InvalidToken => "not a JWT".into(),
        _ => "not a valid HS256 JWT".into(),
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    unix_seconds(SystemTime::now())
}

/// Seconds since the Unix epoch of `t` (0 before it).
pub fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_read_from_the_authorization_header() {
        use axum::http::{HeaderMap, HeaderValue};
        let with = |v: &[u8]| {
            let mut h = HeaderMap::new();
            h.insert("authorization", HeaderValue::from_bytes(v).unwrap());
            h
        };
        assert_eq!(bearer_token(&HeaderMap::new()), Err(AuthError::Missing));
        assert_eq!(bearer_token(&with(b"Bearer abc")), Ok("abc"));
        assert_eq!(bearer_token(&with(b"bearer  abc ")), Ok("abc"));
        assert_eq!(bearer_token(&with(b"Bearer ")), Err(AuthError::Missing));
        assert_eq!(bearer_token(&with(b"Basic abc")), Err(AuthError::BadScheme));
        assert_eq!(bearer_token(&with(b"abc")), Err(AuthError::BadScheme));
        assert_eq!(
            bearer_token(&with(b"Bearer \xff")),
            Err(AuthError::BadScheme)
        );
    }

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn keys() -> KeySet {
        KeySet::single("k1", SECRET).unwrap()
    }

    fn claims(room: &str) -> Claims {
        let now = unix_now();
        Claims {
            iss: "k1".into(),
            sub: "ann".into(),
            name: Some("Ann".into()),
            room: Some(room.into()),
            grants: Grants::participant(),
            metadata: None,
            nbf: now,
            exp: now + 60,
        }
    }

    #[test]
    fn a_minted_token_verifies_and_opens_only_its_room() {
        let k = keys();
        let (token, minted) = k.mint("k1", &TokenSpec::participant("a", "ann")).unwrap();
        assert_eq!(k.verify(&token).unwrap(), minted);
        assert_eq!(k.authorize_join(Some(&token), "a").unwrap().sub, "ann");
        assert_eq!(
            k.authorize_join(Some(&token), "b"),
            Err(AuthError::WrongRoom)
        );
        assert_eq!(k.authorize_join(None, "a"), Err(AuthError::Missing));
    }

    #[test]
    fn bad_tokens_are_sorted_by_reason() {
        let k = keys();
        let mut expired = claims("a");
        expired.nbf -= 7200;
        expired.exp -= 3600;
        assert_eq!(
            k.verify(&k.sign(&expired).unwrap()),
            Err(AuthError::Expired)
        );
        let mut early = claims("a");
        early.nbf += 3600;
        early.exp += 7200;
        assert_eq!(
            k.verify(&k.sign(&early).unwrap()),
            Err(AuthError::NotYetValid)
        );
        let other = KeySet::single("k1", &"x".repeat(40)).unwrap();
        let forged = other.sign(&claims("a")).unwrap();
        assert_eq!(k.verify(&forged), Err(AuthError::BadSignature));
        let stranger = KeySet::single("k2", SECRET).unwrap();
        let mut c = claims("a");
        c.iss = "k2".into();
        assert_eq!(
            k.verify(&stranger.sign(&c).unwrap()),
            Err(AuthError::UnknownKey)
        );
        for junk in ["x", "a.b.c", "....", "eyJhbGciOiJIUzI1NiJ9.e30.x"] {
            assert!(
                matches!(k.verify(junk), Err(AuthError::Malformed(_))),
                "{junk}: {:?}",
                k.verify(junk)
            );
        }
        let mut no_join = claims("a");
        no_join.grants.join = false;
        assert_eq!(
            k.authorize_join(Some(&k.sign(&no_join).unwrap()), "a"),
            Err(AuthError::MissingGrant("join"))
        );
    }

    #[test]
    fn the_algorithm_must_be_hs256() {
        let k = keys();
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS384),
            &claims("a"),
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap();
        assert_eq!(
            k.verify(&token),
            Err(AuthError::Malformed("the algorithm must be HS256".into()))
        );
    }

    #[test]
    fn specs_and_keys_are_validated() {
        let mut spec = TokenSpec::participant("a", "ann");
        spec.ttl = Duration::ZERO;
        assert_eq!(spec.validate().unwrap_err().0, "ttl");
        let mut spec = TokenSpec::participant("a b", "ann");
        assert_eq!(spec.validate().unwrap_err().0, "room");
        spec.room = None;
        assert_eq!(spec.validate().unwrap_err().0, "room");
        let spec = TokenSpec::participant("a", " ");
        assert_eq!(spec.validate().unwrap_err().0, "identity");
        assert_eq!(KeySet::single("k", "short"), Err(KeyError::ShortSecret));
        assert_eq!(KeySet::single("a b", SECRET), Err(KeyError::BadName));
        assert!(!format!("{:?}", keys()).contains(SECRET));
    }

    #[test]
    fn grant_lists_parse() {
        let admin = Grants::admin();
        assert!(admin.covers(&Grants::default()) && !admin.covers(&Grants::participant()));
        assert!(admin.union(&Grants::participant()).covers(&Grants::all()));
        assert!(!Grants::participant().covers(&admin));
        assert_eq!(
            Grants::parse_list("join, publish,room_admin").unwrap(),
            Grants {
                join: true,
                publish: true,
                room_admin: true,
                ..Grants::default()
            }
        );
        assert!(Grants::parse_list("join,fly").is_err());
    }
}
