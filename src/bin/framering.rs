//! The `framering` admin tool: run the demo pipeline, benchmark the ring,
//! watch, list and clean rings.
//!
//! Exit codes: 0 success; 1 failure (a demo process failed); 2 bad flags;
//! 3 `clean NAME` refused (live producer or unreadable ring); 4 `bridge
//! recv --exit-on-loss`: the sender was lost (`bridge send`: the local
//! producer died).

use clap::{Parser, Subcommand};
use framering::app::cli::{self, exit};
use framering::app::status::{render, to_json};
use framering::ring::inspect::{self, Removal, RingView};
use framering::ring::OpenError;
use std::path::{Path, PathBuf};
use std::process::Command;

/// `print!` that returns the error instead of panicking: a closed pipe
/// (`framering list | head`) ends the program quietly (see [`main`]).
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        write!(std::io::stdout().lock(), $($arg)*)
    }};
}

/// `println!` that returns the error instead of panicking.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)
    }};
}

#[derive(Parser, Debug)]
#[command(version, about = "Admin tool for framering shared-memory frame rings")]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the demo pipeline: one producer and N consumers on the config's
    /// input, each printing its frames per second.
    Demo {
        /// Config file (default: ./config.toml if there is one, else the
        /// built-in defaults, which are the repository's config.toml).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Number of consumer processes.
        #[arg(long, default_value_t = 2)]
        consumers: u32,
        /// Replay the inputs this many times.
        #[arg(long = "loop", default_value_t = 50)]
        loops: u32,
        /// Output directory; consumer i writes to OUTPUT/consumer-i.
        #[arg(long, default_value = "out")]
        output: PathBuf,
    },
    /// Show a running ring: slots by state, producer, consumers, rates.
    /// Read-only: never changes the segment, never holds a slot.
    Status {
        /// Ring name.
        name: String,
        /// Refresh in place until interrupted.
        #[arg(long)]
        watch: bool,
        /// Print one JSON snapshot.
        #[arg(long)]
        json: bool,
        /// Seconds between the two samples rates are computed from (and
        /// between refreshes with --watch).
        #[arg(long, default_value_t = 1.0)]
        interval: f64,
    },
    /// Measure the ring: a producer and K consumer processes moving
    /// synthetic frames; prints fps, GB/s, latency percentiles, CPU seconds
    /// and drops per process.
    Bench {
        #[command(flatten)]
        spec: framering::app::bench::BenchSpec,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// One process of `bench` (internal).
    #[command(hide = true)]
    BenchRole {
        #[arg(long, value_enum)]
        role: framering::app::bench::Role,
        #[arg(long, default_value_t = 0)]
        index: u32,
        #[arg(long, default_value_t = 0)]
        group: u32,
        /// The BenchSpec, as JSON.
        #[arg(long)]
        spec: String,
    },
    /// List every framering ring in /dev/shm with its producer and state.
    List,
    /// Remove rings whose producer is dead (all of them, or just NAME).
    Clean {
        /// A ring name; all rings if omitted.
        name: Option<String>,
        /// With a NAME: remove it even if it cannot be read as a ring
        /// (truncated, corrupt, never initialised, another layout version),
        /// so its producer cannot be checked: for leftovers you know are dead.
        #[arg(long, requires = "name")]
        force: bool,
    },
    /// Frames across hosts over Zenoh (built with `--features bridge`).
    #[cfg(feature = "bridge")]
    #[command(subcommand)]
    Bridge(Box<bridge::BridgeCmd>),
    /// Frames across hosts over Zenoh: not in this build (build with
    /// `--features bridge`).
    #[cfg(not(feature = "bridge"))]
    #[command(disable_help_flag = true)]
    Bridge {
        /// Whatever was asked of the bridge.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
        args: Vec<String>,
    },
}

impl cli::Quiet for Args {
    fn quiet(&self) -> bool {
        false
    }
}

#[cfg(feature = "bridge")]
mod bridge {
    use framering::app::bridge::args::BridgeArgs;
    use framering::app::bridge::{recv, send};
    use framering::app::cli::{self, exit};

    #[derive(clap::Subcommand, Debug)]
    pub enum BridgeCmd {
        /// Publish the frames of a local ring on a zenoh key (joins a group
        /// of the ring; every frame, or with --live the newest).
        Send {
            /// The local ring.
            ring: String,
            /// bridge.group: the group of the local ring to join
            #[arg(long)]
            group: Option<String>,
            /// bridge.live: send the newest frame, drop older ones in the
            /// group (never slows the local ring)
            #[arg(long)]
            live: bool,
            #[command(flatten)]
            bridge: BridgeArgs,
        },
        /// Receive the frames of a zenoh key into a local ring (created
        /// with the sender's shape).
        Recv {
            /// ring.name: the local ring to create
            #[arg(long)]
            ring: Option<String>,
            /// ring.slots
            #[arg(long)]
            slots: Option<u32>,
            /// ring.groups: groups to declare on the local ring
            #[arg(long, value_delimiter = ',')]
            groups: Option<Vec<String>>,
            /// producer.keep: leave the local ring in /dev/shm at exit
            #[arg(long)]
            keep: bool,
            /// bridge.exit_on_loss: end the stream (exit 4) when the sender
            /// is lost, instead of waiting for it to come back
            #[arg(long)]
            exit_on_loss: bool,
            #[command(flatten)]
            bridge: BridgeArgs,
        },
    }

    pub fn run(cmd: BridgeCmd) -> anyhow::Result<i32> {
        framering::ring::signals::install();
        framering::app::bridge::start_watchdog(std::time::Duration::from_secs(3));
        match cmd {
            BridgeCmd::Send {
                ring,
                group,
                live,
                bridge,
            } => {
                let mut cfg = bridge.load()?;
                cli::set(&mut cfg.bridge.group, group);
                cfg.bridge.live |= live;
                let report =
                    send::run_send(&ring, &cfg, &bridge.run_options("bridge_send", &ring)?)?;
                eprintln!("{}", report.summary.render());
                if let Some(path) = &bridge.stats_json {
                    report.summary.write_json(path)?;
                }
                Ok(match report.end {
                    send::SendEnd::EndOfStream | send::SendEnd::Stopped => exit::OK,
                    send::SendEnd::ProducerGone(pid) => {
                        eprintln!(
                            "error: the local producer (pid {pid}) died before ending the stream"
                        );
                        exit::PRODUCER_GONE
                    }
                    send::SendEnd::ProducerFailed => exit::FAILURE,
                })
            }
            BridgeCmd::Recv {
                ring,
                slots,
                groups,
                keep,
                exit_on_loss,
                bridge,
            } => {
                let mut cfg = bridge.load()?;
                cli::set(&mut cfg.ring.name, ring);
                cli::set(&mut cfg.ring.slots, slots);
                cli::set(&mut cfg.ring.groups, groups);
                cfg.producer.keep |= keep;
                cfg.bridge.exit_on_loss |= exit_on_loss;
                let name = cfg.ring.name.clone();
                let report = recv::run_recv(&cfg, &bridge.run_options("bridge_recv", &name)?)?;
                eprintln!("{}", report.summary.render());
                if report.gaps > 0 {
                    eprintln!(
                        "bridge recv: {} frames missing in the remote seq",
                        report.gaps
                    );
                }
                if let Some(path) = &bridge.stats_json {
                    report.summary.write_json(path)?;
                }
                Ok(match report.end {
                    recv::RecvEnd::EndOfStream | recv::RecvEnd::Stopped => exit::OK,
                    recv::RecvEnd::SenderLost => {
                        eprintln!("error: the sender was lost (--exit-on-loss): the local stream was ended");
                        exit::SENDER_LOST
                    }
                })
            }
        }
    }
}

fn sibling(bin: &str) -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe()?;
    let p = me.with_file_name(bin);
    anyhow::ensure!(
        p.exists(),
        "{} not found next to {}: build all binaries with `cargo build --release`",
        bin,
        me.display()
    );
    Ok(p)
}

fn demo(
    config: Option<PathBuf>,
    consumers: u32,
    loops: u32,
    output: PathBuf,
) -> anyhow::Result<i32> {
    let producer = sibling("framering-producer")?;
    let consumer = sibling("framering-consumer")?;
    // Read the config here, once, so that a bad one is one error (not one
    // per child); the children get the same file, or none (built-in
    // defaults) when there is none here.
    let explicit = config.is_some();
    let path = config.unwrap_or_else(|| PathBuf::from("config.toml"));
    let cfg = cli::load_config(&path, explicit)?;
    let config_args: Vec<String> = if explicit || path.exists() {
        vec!["--config".into(), path.to_string_lossy().into_owned()]
    } else {
        vec![]
    };
    // The sample images: the configured input, or, when run outside the
    // repository with the default input, the repository's own assets/.
    let mut input = PathBuf::from(&cfg.producer.input);
    let repo_assets = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets");
    if cfg.producer.input == "assets" && !input.exists() && repo_assets.is_dir() {
        input = repo_assets;
    }
    let path_like = !cfg.producer.input.contains("://")
        && !cfg.producer.input.contains(['*', '?', '[', '%'])
        && cfg.producer.input != "-";
    anyhow::ensure!(
        !path_like || input.exists(),
        "demo input {} not found: run the demo from the repository, or give a config whose producer.input exists",
        input.display()
    );
    let mut children = vec![];
    for i in 0..consumers {
        let out = output.join(format!("consumer-{i}"));
        children.push((
            format!("consumer {i}"),
            Command::new(&consumer)
                .args(&config_args)
                .arg("--output")
                .arg(&out)
                .spawn()?,
        ));
    }
    children.push((
        "producer".to_string(),
        Command::new(&producer)
            .args(&config_args)
            .args(["--loop", &loops.to_string(), "--input"])
            .arg(&input)
            .spawn()?,
    ));
    let mut code = exit::OK;
    for (who, mut child) in children {
        let status = child.wait()?;
        if !status.success() {
            eprintln!("demo: {who} exited with {status}");
            code = exit::FAILURE;
        }
    }
    if code == exit::OK {
        eprintln!("demo: frames written under {}", output.display());
    }
    Ok(code)
}

fn status(name: &str, watch: bool, json: bool, interval: f64) -> anyhow::Result<i32> {
    anyhow::ensure!(
        interval.is_finite() && (0.01..=3600.0).contains(&interval),
        "--interval must be between 0.01 and 3600 seconds"
    );
    let view = RingView::open(name)?;
    let interval = std::time::Duration::from_secs_f64(interval);
    framering::ring::signals::install();
    loop {
        let s = view.sample(interval);
        if json {
            outln!("{}", to_json(&s)?)?;
        } else if watch {
            // Clear the screen and home the cursor, like top.
            out!("\x1b[2J\x1b[H{}", render(&s))?;
        } else {
            out!("{}", render(&s))?;
        }
        if !watch || framering::ring::signals::stop_requested() {
            return Ok(exit::OK);
        }
    }
}

fn list() -> anyhow::Result<i32> {
    outln!(
        "{:<32} {:>5} {:>16} {:>7} {:>8} {:>6} {:>10} {:>9}  state",
        "NAME",
        "SLOTS",
        "FRAME (HxWxC)",
        "DTYPE",
        "PRODUCER",
        "ALIVE",
        "PUBLISHED",
        "CONSUMERS"
    )?;
    for name in inspect::shm_names()? {
        match RingView::open(&name) {
            Ok(view) => {
                let s = view.snapshot();
                let p = &s.producer;
                let state = if p.alive {
                    p.state
                } else {
                    "abandoned (framering clean removes it)"
                };
                outln!(
                    "{:<32} {:>5} {:>16} {:>7} {:>8} {:>6} {:>10} {:>9}  {}",
                    name,
                    s.slots,
                    format!("{}x{}x{}", s.height, s.width, s.channels),
                    s.dtype.name(),
                    p.pid,
                    if p.alive { "yes" } else { "no" },
                    p.published,
                    s.consumers.len(),
                    state
                )?;
            }
            Err(OpenError::NotARing { .. }) | Err(OpenError::InvalidName(_)) => {}
            Err(e) => outln!("{name:<32} (unreadable: {e})")?,
        }
    }
    Ok(exit::OK)
}

fn clean(only: Option<String>, force: bool) -> anyhow::Result<i32> {
    let names = match &only {
        Some(n) => vec![n.clone()],
        None => inspect::shm_names()?,
    };
    let mut code = exit::OK;
    for name in names {
        match inspect::remove_if_abandoned(&name) {
            Ok(Removal::Kept { pid }) => {
                outln!("kept {name}: its producer (pid {pid}) is alive")?;
                if only.is_some() {
                    code = exit::RING;
                }
            }
            Ok(Removal::Removed { pid }) => outln!("removed {name} (producer pid {pid} is gone)")?,
            Err(OpenError::NotARing { .. }) | Err(OpenError::InvalidName(_)) if only.is_none() => {}
            Err(e) => {
                // Unreadable as a ring: its producer cannot be checked, so
                // only an explicit --force removes it.
                let forceable = matches!(
                    e,
                    OpenError::NotARing { .. }
                        | OpenError::NotReady { .. }
                        | OpenError::Corrupt { .. }
                        | OpenError::Version { .. }
                );
                if forceable && force {
                    match std::fs::remove_file(format!("/dev/shm/{name}")) {
                        Ok(()) => outln!("removed {name} (--force: {e})")?,
                        Err(io) => {
                            outln!("kept {name}: {io}")?;
                            code = exit::RING;
                        }
                    }
                } else {
                    let hint = if forceable && only.is_some() {
                        " (if it is a dead leftover: framering clean --force NAME)"
                    } else {
                        ""
                    };
                    outln!("kept {name}: {e}{hint}")?;
                    code = exit::RING;
                }
            }
        }
    }
    Ok(code)
}

fn run(args: Args) -> anyhow::Result<i32> {
    match args.cmd {
        Cmd::Demo {
            config,
            consumers,
            loops,
            output,
        } => demo(config, consumers, loops, output),
        Cmd::Status {
            name,
            watch,
            json,
            interval,
        } => status(&name, watch, json, interval),
        Cmd::Bench { spec, json } => {
            let report = framering::app::bench::run(&spec, &std::env::current_exe()?)?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&report)?)?;
            } else {
                out!("{}", report.render())?;
            }
            Ok(exit::OK)
        }
        Cmd::BenchRole {
            role,
            index,
            group,
            spec,
        } => {
            let spec: framering::app::bench::BenchSpec = serde_json::from_str(&spec)?;
            let report = match role {
                framering::app::bench::Role::Producer => {
                    framering::app::bench::run_producer(&spec)?
                }
                framering::app::bench::Role::Consumer => {
                    framering::app::bench::run_consumer(&spec, index, group)?
                }
            };
            outln!("{}", serde_json::to_string(&report)?)?;
            Ok(exit::OK)
        }
        Cmd::List => list(),
        Cmd::Clean { name, force } => clean(name, force),
        #[cfg(feature = "bridge")]
        Cmd::Bridge(cmd) => bridge::run(*cmd),
        #[cfg(not(feature = "bridge"))]
        Cmd::Bridge { .. } => {
            eprintln!(
                "error: this framering was built without the bridge: build it with \
                 `cargo build --release --features bridge` (zenoh; its first build takes \
                 ~15 minutes on 2 cores), and build with the same features every time \
                 (a plain `cargo build --release` rebuilds it without)"
            );
            Ok(exit::CONFIG)
        }
    }
}

/// Whether the error is standard output's reader having gone (a pipe into
/// `head`): not a failure of ours, so the program exits quietly with 0.
fn broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn main() {
    cli::main_with::<Args>(|args| match run(args) {
        Err(e) if broken_pipe(&e) => Ok(exit::OK),
        r => r,
    })
}
