//! The `framering` admin tool: run the demo pipeline, benchmark the ring,
//! watch, list and clean rings.
//!
//! Exit codes: 0 success; 1 failure (a demo process failed); 2 bad flags;
//! 3 `clean NAME` refused (live producer or unreadable ring); 4 `bridge
//! recv --exit-on-loss`: the sender was lost (`bridge send`: the local
//! producer died).

use clap::{Parser, Subcommand};
use framering::app::{bench, clean, cli, demo, exit, list, status};
use std::path::PathBuf;

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
        spec: bench::BenchSpec,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// One process of `bench` (internal).
    #[command(hide = true)]
    BenchRole {
        #[arg(long, value_enum)]
        role: bench::Role,
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
    Bridge(Box<framering::app::bridge::command::BridgeCmd>),
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
        Cmd::Bench { spec, json } => bench::run_command(&spec, json, &mut std::io::stdout().lock()),
        Cmd::BenchRole {
            role,
            index,
            group,
            spec,
        } => bench::run_role(role, index, group, &spec, &mut std::io::stdout().lock()),
        Cmd::List => list::run(&mut std::io::stdout().lock()),
        Cmd::Clean { name, force } => clean::run(name, force, &mut std::io::stdout().lock()),
        #[cfg(feature = "bridge")]
        Cmd::Bridge(cmd) => framering::app::bridge::command::run(*cmd),
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
