//! What the binaries share: the `[ring]` flags, loading the config,
//! logging, and the `main` that runs a program and exits with its code
//! ([`exit`]).

use super::config::{Config, ConfigError, WaitKind};
use super::exit;
use super::metrics::Metrics;
use super::stats::{Progress, RunOptions};
use crate::media::Dtype;
use std::path::Path;

/// Starts `tracing` to stderr; `RUST_LOG` overrides the default `info`
/// (`warn` when `quiet`: a quiet run that goes well prints nothing).
pub fn init_logging(quiet: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(if quiet { "warn" } else { "info" })
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour_stderr())
        .with_target(false)
        .init();
}

/// Colour in logs only when stderr is a terminal and `NO_COLOR` is unset
/// or empty (<https://no-color.org>): a log file or a pipe gets plain text.
fn colour_stderr() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").map_or(true, |v| v.is_empty())
}

/// Loads the config file; the default path may be absent (built-in defaults).
pub fn load_config(path: &Path, explicit: bool) -> Result<Config, ConfigError> {
    if !explicit && !path.exists() {
        tracing::info!(path = %path.display(), "no config file; using built-in defaults");
        return Ok(Config::default());
    }
    Config::load(path)
}

/// Flags that override `[ring]` keys, shared by every binary.
#[derive(Debug, Clone, clap::Args)]
pub struct RingArgs {
    /// Config file.
    #[arg(long, default_value = "config.toml")]
    pub config: std::path::PathBuf,
    /// ring.name
    #[arg(long)]
    pub ring: Option<String>,
    /// ring.slots
    #[arg(long)]
    pub slots: Option<u32>,
    /// ring.height
    #[arg(long)]
    pub height: Option<u32>,
    /// ring.width
    #[arg(long)]
    pub width: Option<u32>,
    /// ring.channels
    #[arg(long)]
    pub channels: Option<u32>,
    /// ring.dtype: uint8, uint16 or float32 (a consumer given it insists
    /// on it; without it a consumer adopts the ring's)
    #[arg(long)]
    pub dtype: Option<Dtype>,
    /// ring.user_meta_bytes: bytes of user metadata per frame
    #[arg(long, value_name = "BYTES")]
    pub user_meta_bytes: Option<u32>,
    /// ring.mode (octal, e.g. 0660)
    #[arg(long)]
    pub mode: Option<String>,
    /// ring.max_consumers
    #[arg(long)]
    pub max_consumers: Option<u32>,
    /// ring.max_groups
    #[arg(long)]
    pub max_groups: Option<u32>,
    /// ring.max_queued (0: 2 to 8 frames, as many as fit in 8 MiB)
    #[arg(long)]
    pub max_queued: Option<u32>,
    /// ring.wait
    #[arg(long, value_enum)]
    pub wait: Option<WaitKind>,
    /// Write the final summary as JSON to this file.
    #[arg(long)]
    pub stats_json: Option<std::path::PathBuf>,
    /// Print nothing but warnings and errors: no progress, no summary
    /// (--stats-json still writes it).
    #[arg(long, short)]
    pub quiet: bool,
    /// Serve Prometheus metrics on http://ADDR/metrics (`PORT` alone binds
    /// to loopback).
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<String>,
}

impl RingArgs {
    /// Progress and metrics for a run of `role`; starts the metrics server.
    pub fn run_options(&self, role: &str, ring: &str) -> anyhow::Result<RunOptions> {
        let metrics = match &self.metrics_addr {
            Some(addr) => {
                let m = Metrics::new(role, ring);
                let bound = m.serve(addr).map_err(|e| {
                    let message = format!("cannot serve metrics on {addr}: {e}");
                    // An address that does not parse is a bad flag (exit 2);
                    // one that cannot be bound (in use, no permission) is not.
                    if e.kind() == std::io::ErrorKind::InvalidInput {
                        anyhow::Error::new(ConfigError::Invalid {
                            key: "--metrics-addr",
                            message: format!("{addr:?} is not HOST:PORT or PORT ({e})"),
                        })
                    } else {
                        anyhow::anyhow!(message)
                    }
                })?;
                tracing::info!("metrics on http://{bound}/metrics");
                Some(m)
            }
            None => None,
        };
        Ok(RunOptions {
            progress: Progress::auto(self.quiet),
            metrics,
        })
    }
}

/// The ids of the [`RingArgs`] only a producer uses (it creates the ring;
/// a consumer adopts the ring's): hidden from a consumer's `--help` and
/// refused by [`RingArgs::refuse_producer_flags`].
pub const PRODUCER_ONLY: [&str; 6] = [
    "slots",
    "user_meta_bytes",
    "mode",
    "max_consumers",
    "max_groups",
    "max_queued",
];

impl RingArgs {
    /// A consumer's check: none of the flags only the producer uses was
    /// given (a usage error naming the first one).
    pub fn refuse_producer_flags(&self) -> Result<(), ConfigError> {
        let given = [
            ("--slots", self.slots.is_some()),
            ("--user-meta-bytes", self.user_meta_bytes.is_some()),
            ("--mode", self.mode.is_some()),
            ("--max-consumers", self.max_consumers.is_some()),
            ("--max-groups", self.max_groups.is_some()),
            ("--max-queued", self.max_queued.is_some()),
        ];
        match given.into_iter().find(|(_, given)| *given) {
            Some((flag, _)) => Err(ConfigError::Invalid {
                key: flag,
                message: "only the producer takes it: it creates the ring, and a consumer adopts the ring's slots, metadata size, mode and limits".into(),
            }),
            None => Ok(()),
        }
    }

    /// Loads the config and applies these overrides.
    pub fn load(&self, argv_has_config: bool) -> Result<Config, ConfigError> {
        let mut c = load_config(&self.config, argv_has_config)?;
        let r = &mut c.ring;
        set(&mut r.name, self.ring.clone());
        set(&mut r.slots, self.slots);
        set(&mut r.height, self.height.map(Some));
        set(&mut r.width, self.width.map(Some));
        set(&mut r.channels, self.channels);
        set(&mut r.dtype, self.dtype);
        set(&mut r.user_meta_bytes, self.user_meta_bytes);
        set(&mut r.mode, self.mode.clone());
        set(&mut r.max_consumers, self.max_consumers);
        set(&mut r.max_groups, self.max_groups);
        set(&mut r.max_queued, self.max_queued);
        set(&mut r.wait, self.wait);
        Ok(c)
    }
}

/// Whether `--config` was given on the command line.
pub fn config_flag_given() -> bool {
    std::env::args().any(|a| a == "--config" || a.starts_with("--config="))
}

/// Replaces `field` with the flag's value when the flag was given.
pub fn set<T>(field: &mut T, flag: Option<T>) {
    if let Some(v) = flag {
        *field = v;
    }
}

/// Flags that ask for a quiet run ([`init_logging`]).
pub trait Quiet {
    /// Whether `-q`/`--quiet` was given.
    fn quiet(&self) -> bool;
}

/// The whole `main` of a binary: flag parsing, logging, `run`, exit code.
pub fn main_with<A: clap::Parser + Quiet>(run: impl FnOnce(A) -> anyhow::Result<i32>) -> ! {
    main_with_command(|c| c, run)
}

/// [`main_with`] for a binary whose flags `edit` adjusts (e.g. hides some
/// of a flattened group).
pub fn main_with_command<A: clap::Parser + Quiet>(
    edit: impl FnOnce(clap::Command) -> clap::Command,
    run: impl FnOnce(A) -> anyhow::Result<i32>,
) -> ! {
    let matches = edit(A::command()).get_matches();
    let args = A::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    init_logging(args.quiet());
    let code = match run(args) {
        Ok(code) => code,
        Err(e) => exit::report_error(&e),
    };
    std::process::exit(code)
}
