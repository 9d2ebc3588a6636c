//! The server's settings: command-line flags, each also readable from an `SFU_*` environment
//! variable. Defaults give a working conference on a laptop.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use clap::Parser;

/// A WebRTC selective forwarding unit: rooms, one peer connection per participant, simulcast-ready
/// RTP forwarding.
#[derive(Debug, Clone, Parser)]
#[command(name = "sfu", version, about)]
pub struct Config {
    /// Address for HTTP and WebSocket (the demo page, the browser client, signalling).
    #[arg(long = "http", env = "SFU_HTTP", default_value = "0.0.0.0:8080")]
    pub http: SocketAddr,

    /// IP the media (UDP) sockets bind to.
    #[arg(long = "udp-ip", env = "SFU_UDP_IP", default_value = "0.0.0.0")]
    pub udp_ip: IpAddr,

    /// First UDP media port. Worker N binds port + N, so open `port .. port + workers - 1`.
    /// 0 picks free ports (for tests).
    #[arg(long = "udp-port", env = "SFU_UDP_PORT", default_value_t = 50000)]
    pub udp_port: u16,

    /// IP put in ICE candidates, for a server behind 1:1 NAT (its public IP). May be given
    /// several times. Default: every address of the machine's interfaces (or `--udp-ip` when that
    /// is not the unspecified address).
    #[arg(long = "advertise-ip", env = "SFU_ADVERTISE_IP", value_delimiter = ',')]
    pub advertise_ip: Vec<IpAddr>,

    /// Media worker threads, each with its own UDP socket. Default: one per CPU core.
    #[arg(long, env = "SFU_WORKERS")]
    pub workers: Option<usize>,

    /// Log filter, in `tracing` syntax (for example `info` or `sfu=debug,str0m=warn`).
    #[arg(long, env = "SFU_LOG", default_value = "info")]
    pub log: String,

    /// Log as JSON lines instead of plain text.
    #[arg(long, env = "SFU_LOG_JSON")]
    pub log_json: bool,
}

/// A setting that cannot work, found at start.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `--workers 0`, or more than the port range allows.
    #[error("workers: {0}")]
    Workers(String),
    /// No address to advertise.
    #[error("advertise-ip: {0}")]
    Advertise(String),
}

impl Config {
    /// The number of workers, defaulting to the core count.
    pub fn worker_count(&self) -> usize {
        self.workers.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
    }

    /// Checks what can be checked before binding anything.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let n = self.worker_count();
        if n == 0 || n > 256 {
            return Err(ConfigError::Workers(format!("{n} is not within 1..=256")));
        }
        if self.udp_port != 0 && self.udp_port as usize + n - 1 > u16::MAX as usize {
            return Err(ConfigError::Workers(format!(
                "ports {}..{} do not fit",
                self.udp_port,
                self.udp_port as usize + n - 1
            )));
        }
        if self.advertise_ip.iter().any(|ip| ip.is_unspecified()) {
            return Err(ConfigError::Advertise(
                "0.0.0.0 or :: cannot be reached; give a real address".into(),
            ));
        }
        Ok(())
    }

    /// The UDP address worker `index` binds.
    pub fn udp_bind(&self, index: usize) -> SocketAddr {
        let port = if self.udp_port == 0 {
            0
        } else {
            self.udp_port + index as u16
        };
        SocketAddr::new(self.udp_ip, port)
    }

    /// The IPs to advertise in candidates.
    pub fn candidate_ips(&self) -> Result<Vec<IpAddr>, ConfigError> {
        if !self.advertise_ip.is_empty() {
            return Ok(self.advertise_ip.clone());
        }
        if !self.udp_ip.is_unspecified() {
            return Ok(vec![self.udp_ip]);
        }
        let want_v6 = self.udp_ip.is_ipv6();
        let mut ips: Vec<IpAddr> = if_addrs::get_if_addrs()
            .map_err(|e| ConfigError::Advertise(format!("listing interfaces: {e}")))?
            .into_iter()
            .map(|i| i.ip())
            .filter(|ip| match ip {
                IpAddr::V4(_) => true,
                // Link-local IPv6 needs a scope id that candidates cannot carry.
                IpAddr::V6(v6) => want_v6 && (v6.segments()[0] & 0xffc0) != 0xfe80,
            })
            .collect();
        // Loopback last: browsers on other machines try the real addresses first.
        ips.sort_by_key(|ip| ip.is_loopback());
        ips.dedup();
        if ips.is_empty() {
            ips.push(IpAddr::V4(Ipv4Addr::LOCALHOST));
        }
        Ok(ips)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Config {
        Config::try_parse_from(std::iter::once("sfu").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn defaults_are_valid() {
        let c = parse(&[]);
        c.validate().unwrap();
        assert_eq!(c.http.port(), 8080);
        assert_eq!(c.udp_bind(2).port(), 50002);
        assert!(!c.candidate_ips().unwrap().is_empty());
    }

    #[test]
    fn advertise_wins_and_zero_workers_is_refused() {
        let c = parse(&["--advertise-ip", "203.0.113.7", "--workers", "2"]);
        assert_eq!(
            c.candidate_ips().unwrap(),
            vec!["203.0.113.7".parse::<IpAddr>().unwrap()]
        );
        assert!(parse(&["--workers", "0"]).validate().is_err());
        assert!(parse(&["--advertise-ip", "0.0.0.0"]).validate().is_err());
        assert!(parse(&["--udp-port", "65535", "--workers", "2"])
            .validate()
            .is_err());
        assert_eq!(parse(&["--udp-port", "0"]).udp_bind(3).port(), 0);
    }
}
