//! The flags of `framering bridge send|recv` that override the `[bridge]`
//! section of config.toml ([`BridgeConfig`]; every key has a flag of the
//! same name).
//!
//! Compiled with or without the `bridge` feature, like the section.

use crate::app::cli::{config_flag_given, load_config, set, RingArgs};
use crate::app::config::bridge::{BridgeConfig, Congestion, ZPriority, ZenohMode};
use crate::app::config::{Config, ConfigError};
use crate::app::stats::RunOptions;

/// Flags of `bridge send` and `bridge recv` that override `[bridge]` keys.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct BridgeArgs {
    /// Config file (its `ring`, `producer` and `bridge` tables).
    #[arg(long, default_value = "config.toml")]
    pub config: std::path::PathBuf,
    /// bridge.key: the zenoh key of the stream, e.g. framering/cam0
    #[arg(long)]
    pub key: Option<String>,
    /// bridge.mode
    #[arg(long, value_enum)]
    pub mode: Option<ZenohMode>,
    /// bridge.connect: an endpoint to connect to (repeatable), e.g.
    /// tcp/10.0.0.2:7447
    #[arg(long)]
    pub connect: Vec<String>,
    /// bridge.listen: an endpoint to listen on (repeatable), e.g.
    /// tcp/0.0.0.0:7447
    #[arg(long)]
    pub listen: Vec<String>,
    /// bridge.multicast_scouting
    #[arg(long, value_name = "BOOL")]
    pub multicast_scouting: Option<bool>,
    /// bridge.shared_memory: zenoh's own shm transport between local processes
    #[arg(long, value_name = "BOOL")]
    pub shared_memory: Option<bool>,
    /// bridge.congestion
    #[arg(long, value_enum)]
    pub congestion: Option<Congestion>,
    /// bridge.priority
    #[arg(long, value_enum)]
    pub priority: Option<ZPriority>,
    /// bridge.express
    #[arg(long, value_name = "BOOL")]
    pub express: Option<bool>,
    /// bridge.batch_size
    #[arg(long)]
    pub batch_size: Option<u32>,
    /// bridge.lease_ms
    #[arg(long)]
    pub lease_ms: Option<u64>,
    /// bridge.block_timeout_secs
    #[arg(long)]
    pub block_timeout: Option<f64>,
    /// bridge.rx_queue
    #[arg(long)]
    pub rx_queue: Option<u32>,
    /// bridge.geometry_timeout_secs
    #[arg(long)]
    pub geometry_timeout: Option<f64>,
    /// bridge.tcp_send_buffer (bytes; 0: automatic)
    #[arg(long)]
    pub tcp_send_buffer: Option<u32>,
    /// bridge.window (frames kept when lossless, most in flight when live; 0: the ring's slots minus one)
    #[arg(long)]
    pub window: Option<u32>,
    /// bridge.receiver_timeout_secs
    #[arg(long)]
    pub receiver_timeout: Option<f64>,
    /// bridge.tls_root_ca (PEM file)
    #[arg(long)]
    pub tls_root_ca: Option<String>,
    /// bridge.tls_certificate (PEM file)
    #[arg(long)]
    pub tls_certificate: Option<String>,
    /// bridge.tls_private_key (PEM file)
    #[arg(long)]
    pub tls_private_key: Option<String>,
    /// bridge.tls_verify_name
    #[arg(long, value_name = "BOOL")]
    pub tls_verify_name: Option<bool>,
    /// bridge.zenoh_config (JSON5 file, e.g. access_control rules)
    #[arg(long)]
    pub zenoh_config: Option<String>,
    /// No progress lines (the summary is still printed).
    #[arg(long, short)]
    pub quiet: bool,
    /// Write the final summary as JSON to this file.
    #[arg(long)]
    pub stats_json: Option<std::path::PathBuf>,
    /// Serve Prometheus metrics on http://ADDR/metrics.
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<String>,
}

impl BridgeArgs {
    /// Applies these flags to `c`.
    pub fn apply(&self, c: &mut BridgeConfig) {
        set(&mut c.key, self.key.clone());
        set(&mut c.mode, self.mode);
        if !self.connect.is_empty() {
            c.connect = self.connect.clone();
        }
        if !self.listen.is_empty() {
            c.listen = self.listen.clone();
        }
        set(&mut c.multicast_scouting, self.multicast_scouting);
        set(&mut c.shared_memory, self.shared_memory);
        set(&mut c.congestion, self.congestion);
        set(&mut c.priority, self.priority);
        set(&mut c.express, self.express);
        set(&mut c.batch_size, self.batch_size);
        set(&mut c.lease_ms, self.lease_ms);
        set(&mut c.block_timeout_secs, self.block_timeout);
        set(&mut c.rx_queue, self.rx_queue);
        set(&mut c.geometry_timeout_secs, self.geometry_timeout);
        set(&mut c.tcp_send_buffer, self.tcp_send_buffer);
        set(&mut c.window, self.window);
        set(&mut c.receiver_timeout_secs, self.receiver_timeout);
        set(&mut c.tls_root_ca, self.tls_root_ca.clone());
        set(&mut c.tls_certificate, self.tls_certificate.clone());
        set(&mut c.tls_private_key, self.tls_private_key.clone());
        set(&mut c.tls_verify_name, self.tls_verify_name);
        set(&mut c.zenoh_config, self.zenoh_config.clone());
    }

    /// The config file with `[bridge]` overridden by these flags (not yet
    /// validated).
    pub fn load(&self) -> Result<Config, ConfigError> {
        let mut cfg = load_config(&self.config, config_flag_given())?;
        self.apply(&mut cfg.bridge);
        Ok(cfg)
    }

    /// Progress and metrics for a run of `role` on `ring`.
    pub fn run_options(&self, role: &str, ring: &str) -> anyhow::Result<RunOptions> {
        RingArgs {
            config: self.config.clone(),
            ring: None,
            slots: None,
            height: None,
            width: None,
            channels: None,
            dtype: None,
            user_meta_bytes: None,
            mode: None,
            max_consumers: None,
            max_groups: None,
            max_queued: None,
            wait: None,
            stats_json: None,
            quiet: self.quiet,
            metrics_addr: self.metrics_addr.clone(),
        }
        .run_options(role, ring)
    }
}
