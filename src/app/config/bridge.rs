//! The `[bridge]` section of config.toml (`framering bridge send|recv`;
//! the flags that override it are in [`crate::app::bridge::args`]).
//!
//! Compiled with or without the `bridge` feature, so that a config file with
//! a `[bridge]` section is valid for every build.

use super::error::{invalid, ConfigError};
use serde::Deserialize;

/// How this process joins the Zenoh network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ZenohMode {
    /// Talks to other peers directly (discovered, or `connect`/`listen`).
    #[default]
    Peer,
    /// Talks through a zenoh router (`connect` names it).
    Client,
}

/// Zenoh's congestion control for the frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Congestion {
    /// Wait for room in zenoh's queues: every frame is delivered (lossless).
    #[default]
    Block,
    /// Zenoh drops the newest message when its queue is full (and a large
    /// fragmented one after 50 ms): not recommended, use `live` instead.
    Drop,
}

/// Zenoh's priority for the frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ZPriority {
    /// Above every data priority.
    RealTime,
    /// Interactive, high.
    InteractiveHigh,
    /// Interactive, low.
    InteractiveLow,
    /// Data, high.
    DataHigh,
    /// Zenoh's default.
    #[default]
    Data,
    /// Data, low.
    DataLow,
    /// Lowest.
    Background,
}

/// `[bridge]`: how frames cross hosts over Zenoh.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BridgeConfig {
    /// "peer" or "client".
    pub mode: ZenohMode,
    /// Endpoints to connect to, e.g. `["tcp/10.0.0.2:7447"]`.
    pub connect: Vec<String>,
    /// Endpoints to listen on, e.g. `["tcp/0.0.0.0:7447"]`.
    pub listen: Vec<String>,
    /// Discover peers by UDP multicast on the LAN (off: only `connect`).
    pub multicast_scouting: bool,
    /// The key expression the frames are published on (`framering/NAME`).
    pub key: String,
    /// The group the sender joins on its local ring.
    pub group: String,
    /// Sender: send only the newest frame; older ones are dropped in the
    /// ring's group (drop-oldest), so the local ring is never slowed down.
    pub live: bool,
    /// Receiver: end the stream (exit 4) when the sender is lost, instead of
    /// waiting for it to come back.
    pub exit_on_loss: bool,
    /// Zenoh's own shared-memory transport between processes of one host
    /// (off: loopback measures the network path).
    pub shared_memory: bool,
    /// Congestion control of the frames: "block" (lossless) or "drop".
    pub congestion: Congestion,
    /// Zenoh priority of the frames.
    pub priority: ZPriority,
    /// Send each frame at once, without batching (zenoh's `express`).
    pub express: bool,
    /// Zenoh link batch size in bytes (0: zenoh's default, 65535).
    pub batch_size: u32,
    /// Zenoh lease: a peer silent this long is declared gone (how fast a
    /// sender whose host or network died is reported; a killed process is
    /// reported at once, its connection closes).
    pub lease_ms: u64,
    /// How long zenoh may block on a full queue before it closes the link
    /// (congestion "block": a receiver whose ring is full stalls the sender
    /// this long at most).
    pub block_timeout_secs: f64,
    /// Receiver: frames zenoh may queue for it before it stops reading the
    /// network (each a frame's worth of memory).
    pub rx_queue: u32,
    /// TCP send buffer of zenoh's links in bytes; 0: automatic (the
    /// kernel's autotuning, except 256 KiB with `live`, so that the newest
    /// frame does not queue behind megabytes of older ones).
    pub tcp_send_buffer: u32,
    /// Receiver: how long to wait for the sender's geometry (0: forever).
    pub geometry_timeout_secs: f64,
    /// Lossless sender: frames it keeps until every receiver has them in
    /// its ring; live sender: the most frames it keeps in flight (its
    /// window follows the link's bandwidth-delay product up to this). 0:
    /// the ring's slots minus one.
    pub window: u32,
    /// Lossless sender: how long it keeps frames for a receiver that went
    /// away (killed, its host down) before it gives it up; a receiver that
    /// comes back later counts what it missed as `remote_gap`.
    pub receiver_timeout_secs: f64,
    /// TLS (zenoh's, mutual): the certificate authority (PEM file) that
    /// signed every side's certificate; with `tls_certificate` and
    /// `tls_private_key`, `tls/HOST:PORT` endpoints accept and open only
    /// links whose peer shows a certificate it signed.
    pub tls_root_ca: String,
    /// TLS: this side's certificate (PEM file), shown on both the links it
    /// accepts and those it opens.
    pub tls_certificate: String,
    /// TLS: this side's private key (PEM file).
    pub tls_private_key: String,
    /// TLS: check that the certificate of the side connected to names the
    /// host of the endpoint (`connect`).
    pub tls_verify_name: bool,
    /// A zenoh configuration file (JSON5) the settings above are applied
    /// on: its `access_control` rules (which certificate common names,
    /// interfaces or users may put or subscribe on which keys), and any
    /// other zenoh setting. Empty: zenoh's defaults.
    pub zenoh_config: String,
}

impl Default for BridgeConfig {
    fn default() -> Self {
        Self {
            mode: ZenohMode::Peer,
            connect: vec![],
            listen: vec![],
            multicast_scouting: true,
            key: "framering/demo".into(),
            group: "bridge".into(),
            live: false,
            exit_on_loss: false,
            shared_memory: false,
            congestion: Congestion::Block,
            priority: ZPriority::Data,
            express: false,
            batch_size: 0,
            lease_ms: 1000,
            block_timeout_secs: 60.0,
            rx_queue: 4,
            tcp_send_buffer: 0,
            geometry_timeout_secs: 0.0,
            window: 0,
            receiver_timeout_secs: 30.0,
            tls_root_ca: String::new(),
            tls_certificate: String::new(),
            tls_private_key: String::new(),
            tls_verify_name: true,
            zenoh_config: String::new(),
        }
    }
}

impl BridgeConfig {
    /// Whether TLS is configured.
    pub fn tls(&self) -> bool {
        !self.tls_root_ca.is_empty()
    }

    /// Checks every value; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let k = &self.key;
        let ok = !k.is_empty()
            && !k.starts_with('/')
            && !k.ends_with('/')
            && !k.contains("//")
            && !k.contains(['*', '$', '?', '#', '@', ' '])
            && k.len() <= 200;
        if !ok {
            return Err(invalid(
                "bridge.key",
                format!("{k:?} is not a plain zenoh key like \"framering/cam0\" (no wildcards, no leading or trailing '/', no '@')"),
            ));
        }
        framering_ring::validate_group_name(&self.group)
            .map_err(|e| invalid("bridge.group", e.to_string()))?;
        for (key, list) in [
            ("bridge.connect", &self.connect),
            ("bridge.listen", &self.listen),
        ] {
            for e in list {
                let proto = e.split_once('/').map(|(p, _)| p);
                if !matches!(proto, Some("tcp" | "tls" | "udp" | "unixsock-stream")) {
                    return Err(invalid(
                        key,
                        format!(
                            "{e:?}: expected tcp/HOST:PORT, tls/HOST:PORT, udp/HOST:PORT or unixsock-stream/PATH"
                        ),
                    ));
                }
                if proto == Some("tls") && !self.tls() {
                    return Err(invalid(
                        key,
                        format!("{e:?}: a tls endpoint needs bridge.tls_root_ca, bridge.tls_certificate and bridge.tls_private_key"),
                    ));
                }
            }
        }
        let tls = [
            ("bridge.tls_root_ca", &self.tls_root_ca),
            ("bridge.tls_certificate", &self.tls_certificate),
            ("bridge.tls_private_key", &self.tls_private_key),
        ];
        if tls.iter().any(|(_, v)| !v.is_empty()) {
            if let Some((key, _)) = tls.iter().find(|(_, v)| v.is_empty()) {
                return Err(invalid(
                    key,
                    "TLS needs all three: tls_root_ca, tls_certificate, tls_private_key",
                ));
            }
            for (key, v) in tls {
                if !std::path::Path::new(v).is_file() {
                    return Err(invalid(key, format!("{v:?} is not a readable file")));
                }
            }
        }
        if !self.zenoh_config.is_empty() && !std::path::Path::new(&self.zenoh_config).is_file() {
            return Err(invalid(
                "bridge.zenoh_config",
                format!("{:?} is not a readable file", self.zenoh_config),
            ));
        }
        if self.mode == ZenohMode::Client && self.connect.is_empty() && !self.multicast_scouting {
            return Err(invalid(
                "bridge.connect",
                "mode \"client\" needs a router to connect to (or multicast_scouting)",
            ));
        }
        if self.batch_size != 0 && !(1024..=65535).contains(&self.batch_size) {
            return Err(invalid(
                "bridge.batch_size",
                format!(
                    "must be 0 (zenoh's default) or 1024..65535, got {}",
                    self.batch_size
                ),
            ));
        }
        if !(100..=3_600_000).contains(&self.lease_ms) {
            return Err(invalid(
                "bridge.lease_ms",
                format!("must be between 100 and 3600000, got {}", self.lease_ms),
            ));
        }
        for (key, v) in [
            ("bridge.block_timeout_secs", self.block_timeout_secs),
            ("bridge.geometry_timeout_secs", self.geometry_timeout_secs),
            ("bridge.receiver_timeout_secs", self.receiver_timeout_secs),
        ] {
            if !(v.is_finite() && (0.0..=1e6).contains(&v)) {
                return Err(invalid(key, format!("must be seconds >= 0, got {v}")));
            }
        }
        if !(1..=1024).contains(&self.rx_queue) {
            return Err(invalid(
                "bridge.rx_queue",
                format!("must be between 1 and 1024, got {}", self.rx_queue),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bridge_defaults_are_valid_and_bad_keys_are_named() {
        BridgeConfig::default().validate().unwrap();
        let bad = |f: fn(&mut BridgeConfig)| {
            let mut c = BridgeConfig::default();
            f(&mut c);
            match c.validate() {
                Err(ConfigError::Invalid { key, .. }) => key,
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(bad(|c| c.key = "framering/*".into()), "bridge.key");
        assert_eq!(bad(|c| c.key = "/x".into()), "bridge.key");
        assert_eq!(bad(|c| c.group = "no space".into()), "bridge.group");
        assert_eq!(
            bad(|c| c.connect = vec!["10.0.0.1:7447".into()]),
            "bridge.connect"
        );
        assert_eq!(
            bad(|c| c.listen = vec!["quic/0.0.0.0:1".into()]),
            "bridge.listen"
        );
        assert_eq!(bad(|c| c.batch_size = 10), "bridge.batch_size");
        assert_eq!(bad(|c| c.lease_ms = 0), "bridge.lease_ms");
        assert_eq!(bad(|c| c.rx_queue = 0), "bridge.rx_queue");
        assert_eq!(
            bad(|c| c.connect = vec!["tls/10.0.0.1:7447".into()]),
            "bridge.connect"
        );
        assert_eq!(
            bad(|c| c.tls_root_ca = "/nonexistent/ca.pem".into()),
            "bridge.tls_certificate"
        );
        assert_eq!(
            bad(|c| c.zenoh_config = "/nonexistent.json5".into()),
            "bridge.zenoh_config"
        );
        assert_eq!(
            bad(|c| c.block_timeout_secs = f64::NAN),
            "bridge.block_timeout_secs"
        );
    }
}
