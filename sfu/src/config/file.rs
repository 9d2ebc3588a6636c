//! The TOML configuration file. Every key is optional; unknown keys are refused.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use serde::Deserialize;

use super::duration::FileDuration;

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileConfig {
    pub http: Option<SocketAddr>,
    pub dev: Option<bool>,
    pub metrics: Option<SocketAddr>,
    pub udp_ip: Option<IpAddr>,
    pub udp_port: Option<u16>,
    pub advertise_ip: Option<Vec<IpAddr>>,
    pub workers: Option<usize>,
    pub log: Option<String>,
    pub log_json: Option<bool>,
    /// API key -> secret.
    pub keys: BTreeMap<String, String>,
    pub room: FileRoom,
    pub limits: FileLimits,
    pub participant: FileParticipant,
    pub shutdown: FileShutdown,
    pub tls: FileTls,
    pub webhook: FileWebhook,
    pub ice_tcp: Option<bool>,
    pub turn: FileTurn,
    pub http_limits: super::http_limits::FileHttpLimits,
    pub cluster: FileCluster,
}

/// `[cluster]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileCluster {
    pub redis_url: Option<String>,
    pub node_id: Option<String>,
    pub region: Option<String>,
    pub public_url: Option<String>,
    pub secret: Option<String>,
    pub room_participants_per_node: Option<usize>,
    pub max_cpu_percent: Option<u32>,
}

/// `[turn]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileTurn {
    pub urls: Option<Vec<String>>,
    pub stun_urls: Option<Vec<String>>,
    pub secret: Option<String>,
    pub ttl: Option<FileDuration>,
}

/// `[limits]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileLimits {
    pub max_participants: Option<u32>,
    pub max_participants_per_worker: Option<u32>,
    pub room_participants_per_worker: Option<u32>,
    pub max_input_age: Option<FileDuration>,
}

/// `[participant]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileParticipant {
    pub max_tracks: Option<usize>,
    pub max_screen_shares: Option<usize>,
    pub offer_burst: Option<f64>,
    pub offers_per_second: Option<f64>,
    pub resume_grace: Option<FileDuration>,
}

/// `[shutdown]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileShutdown {
    pub drain_timeout: Option<FileDuration>,
}

/// `[tls]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileTls {
    pub cert: Option<std::path::PathBuf>,
    pub key: Option<std::path::PathBuf>,
}

/// `[room]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileRoom {
    pub auto_create: Option<bool>,
    pub max_participants: Option<u32>,
    pub empty_timeout: Option<FileDuration>,
    pub video_codecs: Option<Vec<String>>,
}

/// `[webhook]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileWebhook {
    pub urls: Option<Vec<String>>,
    pub api_key: Option<String>,
    pub queue_size: Option<usize>,
    pub max_attempts: Option<u32>,
    pub initial_backoff: Option<FileDuration>,
    pub max_backoff: Option<FileDuration>,
    pub timeout: Option<FileDuration>,
}

impl FileConfig {
    /// Parses the file's text.
    pub fn parse(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }
}
