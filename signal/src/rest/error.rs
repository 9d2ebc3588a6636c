//! The one error type of the REST API, and the JSON body extractor that names the field at fault.
//!
//! Every error is answered as `{"code": "...", "message": "...", "field": "..."}` (`field` only
//! when one is at fault), with the HTTP status that [`ApiError::status`] gives the code.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::auth::AuthError;
use crate::protocol::{ErrorCode, SignalError};
use crate::ws::truncate;

use super::BODY_READ_TIMEOUT;

/// How much of a parser's message, or of a field path, goes back to the client. Parser messages
/// quote the input, which the client chose and may have made huge.
const MAX_DETAIL_CHARS: usize = 200;

/// A REST error: stable code, human message, and the field at fault if any.
#[derive(
    Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error, utoipa::ToSchema,
)]
#[error("{}: {message}", code.as_str())]
#[schema(as = Error)]
pub struct ApiError {
    /// The stable code.
    pub code: ErrorCode,
    /// For humans.
    pub message: String,
    /// The request field at fault (`name`, `max_participants`, `grants.join`, `room`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl ApiError {
    /// An error with no field.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            field: None,
        }
    }

    /// `invalid_request` (400) naming `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError {
            code: ErrorCode::InvalidRequest,
            message: message.into(),
            field: Some(field.into()),
        }
    }

    /// `not_found` (404).
    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::NotFound, message)
    }

    /// The HTTP status for the code.
    pub fn status(&self) -> StatusCode {
        status_of(self.code)
    }
}

/// The HTTP status of an error code.
pub fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::BadMessage
        | ErrorCode::InvalidName
        | ErrorCode::InvalidSdp
        | ErrorCode::InvalidRequest
        | ErrorCode::UnsupportedVersion => StatusCode::BAD_REQUEST,
        ErrorCode::MessageTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorCode::Forbidden => StatusCode::FORBIDDEN,
        ErrorCode::NotFound | ErrorCode::NotJoined | ErrorCode::ResumeFailed => {
            StatusCode::NOT_FOUND
        }
        ErrorCode::Conflict
        | ErrorCode::RoomFull
        | ErrorCode::AlreadyJoined
        | ErrorCode::WrongState => StatusCode::CONFLICT,
        ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::Redirected => StatusCode::TEMPORARY_REDIRECT,
        ErrorCode::LimitExceeded | ErrorCode::UnsupportedCodec => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorCode::ServerBusy => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<SignalError> for ApiError {
    fn from(e: SignalError) -> Self {
        ApiError::new(e.code, e.message)
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        ApiError::new(e.code(), e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status(), Json(&self)).into_response();
        if self.code == ErrorCode::Unauthorized {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

/// Path parameters. A path that does not fit (not UTF-8 after percent-decoding) is refused with
/// `invalid_request` naming `path`, without the decoder's text.
#[derive(Debug)]
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(t)) => Ok(ApiPath(t)),
            Err(_) => Err(ApiError::invalid(
                "path",
                "the path does not fit the route (it must be UTF-8 after percent-decoding)",
            )),
        }
    }
}

/// A JSON request body. Refusals are [`ApiError`]s: `invalid_request` naming the field for
/// missing, unknown or mistyped fields, or `body` for one that did not arrive within
/// [`BODY_READ_TIMEOUT`]; `message_too_large` (413) above the body limit.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let read = tokio::time::timeout(BODY_READ_TIMEOUT, Bytes::from_request(req, state));
        let bytes = read
            .await
            .map_err(|_| ApiError::invalid("body", "the request body did not arrive in time"))?;
        let bytes = bytes.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(ErrorCode::MessageTooLarge, "the request body is too large")
            } else {
                ApiError::invalid("body", "the request body could not be read")
            }
        })?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// Parses a JSON body; the error names the field at fault.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::invalid("body", "a JSON body is required"));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let text = inner.to_string();
        let named = ["missing field `", "unknown field `"]
            .iter()
            .find_map(|p| text.strip_prefix(p))
            .and_then(|rest| rest.split('`').next())
            .map(str::to_owned);
        let field = match (named, path.as_str()) {
            (Some(f), "." | "") => f,
            (Some(f), p) if p == f || p.ends_with(&format!(".{f}")) => p.to_owned(),
            (Some(f), parent) => format!("{parent}.{f}"),
            (None, "." | "") => "body".to_owned(),
            (None, p) => p.to_owned(),
        };
        let message = if inner.is_syntax() || inner.is_eof() {
            format!("the body is not valid JSON: {text}")
        } else {
            text
        };
        ApiError::invalid(
            truncate(&field, MAX_DETAIL_CHARS),
            truncate(&message, MAX_DETAIL_CHARS),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        on: bool,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        name: String,
        #[serde(default)]
        count: Option<u32>,
        #[serde(default)]
        inner: Option<Inner>,
    }

    fn field(json: &str) -> String {
        parse_json::<Outer>(json.as_bytes())
            .unwrap_err()
            .field
            .unwrap()
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(field("{}"), "name");
        assert_eq!(field(r#"{"name":"a","extra":1}"#), "extra");
        assert_eq!(field(r#"{"name":"a","count":"x"}"#), "count");
        assert_eq!(field(r#"{"name":"a","count":-1}"#), "count");
        assert_eq!(field(r#"{"name":"a","inner":{"on":1}}"#), "inner.on");
        assert_eq!(field(r#"{"name":"a","inner":{}}"#), "inner.on");
        assert_eq!(field("not json"), "body");
        assert_eq!(field(""), "body");
    }

    #[test]
    fn details_from_the_input_are_bounded() {
        let long = "x".repeat(10_000);
        for json in [
            format!(r#"{{"name":"a","{long}":1}}"#),
            format!(r#"{{"name":"a","inner":{{"{long}":1}}}}"#),
            format!(r#"{{"name":"a","count":"{long}"}}"#),
            format!(r#"{{"name":{long}}}"#),
        ] {
            let e = parse_json::<Outer>(json.as_bytes()).unwrap_err();
            assert!(e.message.chars().count() <= MAX_DETAIL_CHARS + 1, "{e}");
            assert!(e.field.unwrap().chars().count() <= MAX_DETAIL_CHARS + 1);
        }
    }
}
