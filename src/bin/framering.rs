//! The `framering` admin tool: run the demo pipeline, benchmark the ring,
//! watch, list and clean rings.
//!
//! Exit codes: 0 success; 1 failure (a demo process failed); 2 bad flags;
//! 3 `clean NAME` refused (live producer or unreadable ring); 4 `bridge
//! recv --exit-on-loss`: the sender was lost (`bridge send`: the local
//! producer died).

use clap::{Parser, Subcommand};
use framering::app::{clean, cli, demo, exit, list, status};
use std::path::PathBuf;

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
    use framering::app::{cli, exit};

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

fn run(args: Args) -> anyhow::Result<i32> {
    match args.cmd {
        Cmd::Demo {
            config,
            consumers,
            loops,
            output,
        } => demo::run(config, consumers, loops, output),
        Cmd::Status {
            name,
            watch,
            json,
            interval,
        } => status::run(&name, watch, json, interval, &mut std::io::stdout().lock()),
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
        Cmd::List => list::run(&mut std::io::stdout().lock()),
        Cmd::Clean { name, force } => clean::run(name, force, &mut std::io::stdout().lock()),
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

fn main() {
    cli::main_with::<Args>(|args| match run(args) {
        Err(e) if exit::broken_pipe(&e) => Ok(exit::OK),
        r => r,
    })
}
