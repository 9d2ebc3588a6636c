//! The OpenAPI 3.1 document of the REST API, served at `GET /api/openapi.json`. Written by hand;
//! a test checks that its paths are exactly [`ROUTES`](super::ROUTES).

use serde_json::{json, Value};

use super::dto::VIDEO_CODECS;

fn reference(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn json_body(schema: &str) -> Value {
    json!({ "required": true, "content": { "application/json": { "schema": reference(schema) } } })
}

fn ok(description: &str, schema: &str) -> Value {
    json!({ "description": description,
            "content": { "application/json": { "schema": reference(schema) } } })
}

fn error(description: &str) -> Value {
    ok(description, "Error")
}

/// The responses every authenticated call can give besides its own.
fn responses(extra: Value) -> Value {
    let mut r = json!({
        "400": error("invalid_request: a field breaks the rules (`field` names it)"),
        "401": error("unauthorized: no token, or a malformed, forged, expired or not yet valid one"),
        "403": error("forbidden: the token lacks room_admin, or is for another room"),
        "503": error("server_busy: the media server did not answer in time"),
    });
    if let (Some(r), Some(extra)) = (r.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            r.insert(k.clone(), v.clone());
        }
    }
    r
}

fn param(name: &str, description: &str) -> Value {
    json!({ "name": name, "in": "path", "required": true, "description": description,
            "schema": { "type": "string" } })
}

fn schemas() -> Value {
    let grants = json!({
        "type": "object",
        "description": "What a token allows; a missing grant is false.",
        "properties": {
            "join": { "type": "boolean" }, "publish": { "type": "boolean" },
            "subscribe": { "type": "boolean" }, "publish_data": { "type": "boolean" },
            "room_admin": { "type": "boolean" }
        }
    });
    let video_codecs = json!({
        "type": "array", "uniqueItems": true,
        "items": { "type": "string", "enum": VIDEO_CODECS },
        "description": "Video codecs publishers may send, most preferred first; empty: every \
            codec the server forwards, in each publisher's own order."
    });
    let track = json!({
        "type": "object", "required": ["id", "kind"],
        "properties": {
            "id": { "type": "string" },
            "kind": { "type": "string", "enum": ["audio", "video"] },
            "muted": { "type": "boolean", "default": false }
        }
    });
    json!({
        "Error": {
            "type": "object", "required": ["code", "message"],
            "properties": {
                "code": { "type": "string", "enum": [
                    "bad_message", "message_too_large", "unsupported_version", "not_joined",
                    "already_joined", "invalid_name", "invalid_sdp", "wrong_state",
                    "unauthorized", "forbidden", "room_full", "server_busy", "invalid_request",
                    "not_found", "conflict", "rate_limited", "limit_exceeded", "resume_failed", "unsupported_codec",
                    "internal"] },
                "message": { "type": "string" },
                "field": { "type": "string", "description": "The request field at fault." }
            }
        },
        "CreateRoom": {
            "type": "object", "required": ["name"], "additionalProperties": false,
            "properties": {
                "name": { "type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$" },
                "max_participants": { "type": "integer", "minimum": 0, "maximum": 10000,
                    "description": "0: no limit. Default: room.max_participants." },
                "empty_timeout": { "type": "integer", "minimum": 1, "maximum": 604800,
                    "description": "Seconds. Default: room.empty_timeout." },
                "metadata": { "type": "string", "maxLength": 16384 },
                "video_codecs": video_codecs.clone()
            }
        },
        "UpdateRoom": {
            "type": "object", "additionalProperties": false,
            "properties": {
                "metadata": { "type": "string", "maxLength": 16384 },
                "max_participants": { "type": "integer", "minimum": 0, "maximum": 10000 },
                "empty_timeout": { "type": "integer", "minimum": 1, "maximum": 604800 },
                "video_codecs": video_codecs.clone()
            }
        },
        "Room": {
            "type": "object",
            "required": ["name", "max_participants", "empty_timeout", "metadata",
                         "created_at", "num_participants", "video_codecs"],
            "properties": {
                "name": { "type": "string" },
                "max_participants": { "type": "integer" },
                "empty_timeout": { "type": "integer" },
                "metadata": { "type": "string" },
                "created_at": { "type": "integer", "description": "Unix seconds." },
                "num_participants": { "type": "integer" },
                "video_codecs": video_codecs
            }
        },
        "RoomList": {
            "type": "object", "required": ["rooms"],
            "properties": { "rooms": { "type": "array", "items": reference("Room") } }
        },
        "Track": track,
        "Participant": {
            "type": "object", "required": ["id", "name", "tracks"],
            "properties": {
                "id": { "type": "string" }, "name": { "type": "string" },
                "identity": { "type": "string" }, "metadata": { "type": "string" },
                "tracks": { "type": "array", "items": reference("Track") }
            }
        },
        "ParticipantList": {
            "type": "object", "required": ["participants"],
            "properties": {
                "participants": { "type": "array", "items": reference("Participant") }
            }
        },
        "UpdateParticipant": {
            "type": "object", "additionalProperties": false,
            "properties": {
                "name": { "type": "string", "minLength": 1, "maxLength": 64 },
                "metadata": { "type": "string", "maxLength": 16384 }
            }
        },
        "MuteTrack": {
            "type": "object", "required": ["muted"], "additionalProperties": false,
            "properties": { "muted": { "type": "boolean" } }
        },
        "Grants": grants,
        "CreateToken": {
            "type": "object", "required": ["identity"], "additionalProperties": false,
            "properties": {
                "identity": { "type": "string", "minLength": 1, "maxLength": 128 },
                "room": { "type": "string", "description": "Required when grants.join." },
                "name": { "type": "string", "minLength": 1, "maxLength": 64 },
                "ttl": { "type": "integer", "minimum": 1, "maximum": 2592000,
                    "description": "Seconds. Default 21600." },
                "grants": reference("Grants"),
                "metadata": { "type": "string", "maxLength": 16384 }
            }
        },
        "Token": {
            "type": "object", "required": ["token", "identity", "grants", "expires_at"],
            "properties": {
                "token": { "type": "string", "description": "HS256 JWT." },
                "identity": { "type": "string" }, "room": { "type": "string" },
                "name": { "type": "string" }, "grants": reference("Grants"),
                "expires_at": { "type": "integer", "description": "Unix seconds." }
            }
        }
    })
}

/// The document.
pub fn document() -> Value {
    let room = param("room", "Room name.");
    let participant = param("participant", "Participant id (`Participant.id`).");
    let track = param("track", "Track id (`Track.id`).");
    let not_found = |what: &str| json!({ "404": error(&format!("not_found: no such {what}")) });
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "SFU REST API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Rooms, participants, tracks and access tokens. See docs/rest-api.md."
        },
        "security": [{ "bearer": [] }],
        "paths": {
            "/api/openapi.json": { "get": {
                "summary": "This document.", "security": [],
                "responses": { "200": { "description": "OpenAPI 3.1 document." } }
            }},
            "/api/rooms": {
                "post": {
                    "summary": "Create a room.", "operationId": "createRoom",
                    "requestBody": json_body("CreateRoom"),
                    "responses": responses(json!({
                        "201": ok("The room.", "Room"),
                        "409": error("conflict: the room exists")
                    }))
                },
                "get": {
                    "summary": "List rooms (only the token's room for a room-scoped token).",
                    "operationId": "listRooms",
                    "responses": responses(json!({ "200": ok("The rooms.", "RoomList") }))
                }
            },
            "/api/rooms/{room}": {
                "parameters": [room],
                "get": {
                    "summary": "Get a room.", "operationId": "getRoom",
                    "responses": responses(merge(json!({ "200": ok("The room.", "Room") }),
                        not_found("room")))
                },
                "patch": {
                    "summary": "Change a room's metadata or settings.",
                    "operationId": "updateRoom",
                    "requestBody": json_body("UpdateRoom"),
                    "responses": responses(merge(json!({ "200": ok("The room.", "Room") }),
                        not_found("room")))
                },
                "delete": {
                    "summary": "Delete a room; everyone in it leaves with reason room_deleted.",
                    "operationId": "deleteRoom",
                    "responses": responses(merge(json!({ "204": { "description": "Deleted." } }),
                        not_found("room")))
                }
            },
            "/api/rooms/{room}/participants": {
                "parameters": [room],
                "get": {
                    "summary": "List a room's participants with their tracks.",
                    "operationId": "listParticipants",
                    "responses": responses(merge(
                        json!({ "200": ok("The participants.", "ParticipantList") }),
                        not_found("room")))
                }
            },
            "/api/rooms/{room}/participants/{participant}": {
                "parameters": [room, participant],
                "get": {
                    "summary": "Get a participant.", "operationId": "getParticipant",
                    "responses": responses(merge(
                        json!({ "200": ok("The participant.", "Participant") }),
                        not_found("room or participant")))
                },
                "patch": {
                    "summary": "Change a participant's name or metadata.",
                    "operationId": "updateParticipant",
                    "requestBody": json_body("UpdateParticipant"),
                    "responses": responses(merge(
                        json!({ "200": ok("The participant.", "Participant") }),
                        not_found("room or participant")))
                },
                "delete": {
                    "summary": "Remove a participant; it leaves with reason removed.",
                    "operationId": "removeParticipant",
                    "responses": responses(merge(json!({ "204": { "description": "Removed." } }),
                        not_found("room or participant")))
                }
            },
            "/api/rooms/{room}/participants/{participant}/tracks/{track}/mute": {
                "parameters": [room, participant, track],
                "post": {
                    "summary": "Mute or unmute a published track.",
                    "operationId": "muteTrack",
                    "requestBody": json_body("MuteTrack"),
                    "responses": responses(merge(json!({ "200": ok("The track.", "Track") }),
                        not_found("room, participant or track")))
                }
            },
            "/api/tokens": {
                "post": {
                    "summary": "Mint an access token, signed with the caller's API key.",
                    "operationId": "createToken",
                    "requestBody": json_body("CreateToken"),
                    "responses": responses(json!({ "201": ok("The token.", "Token") }))
                }
            },
            "/api/dev/token": {
                "get": {
                    "summary": "Development mode only: a participant token for anyone.",
                    "description": "Exists only while the server runs without configured keys.",
                    "operationId": "devToken", "security": [],
                    "parameters": [
                        { "name": "room", "in": "query", "required": true,
                          "schema": { "type": "string" } },
                        { "name": "name", "in": "query", "required": true,
                          "schema": { "type": "string" } }
                    ],
                    "responses": {
                        "200": ok("The token.", "Token"),
                        "400": error("invalid_request"),
                        "404": error("not_found: the server has configured keys")
                    }
                }
            }
        },
        "components": {
            "securitySchemes": {
                "bearer": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                    "description": "An access token signed with an API key, granting room_admin." }
            },
            "schemas": schemas()
        }
    })
}

fn merge(mut a: Value, b: Value) -> Value {
    if let (Some(a), Some(b)) = (a.as_object_mut(), b.as_object()) {
        for (k, v) in b {
            a.insert(k.clone(), v.clone());
        }
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rest::ROUTES;
    use std::collections::BTreeSet;

    #[test]
    fn the_document_lists_exactly_the_routes() {
        let doc = document();
        let paths = doc["paths"].as_object().expect("paths");
        let mut documented = BTreeSet::new();
        for (path, item) in paths {
            for method in ["get", "post", "put", "patch", "delete"] {
                if item.get(method).is_some() {
                    documented.insert((method.to_uppercase(), path.clone()));
                }
            }
        }
        let routes: BTreeSet<_> = ROUTES
            .iter()
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect();
        assert_eq!(documented, routes);
    }

    #[test]
    fn every_reference_resolves() {
        let doc = document();
        let text = doc.to_string();
        let schemas = doc["components"]["schemas"].as_object().expect("schemas");
        for piece in text.split("#/components/schemas/").skip(1) {
            let name: String = piece.chars().take_while(|c| c.is_alphanumeric()).collect();
            assert!(schemas.contains_key(&name), "{name}");
        }
    }
}
