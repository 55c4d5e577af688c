//! `framering bridge send|recv` as the admin binary runs them: the
//! subcommands' flags, and each run from its config to its exit code.

use super::args::BridgeArgs;
use super::{recv, send};
use crate::app::{cli, exit};

/// `framering bridge send|recv`.
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
        // The flags over `[bridge]` (no doc comment: clap would read it
        // as help text).
        #[allow(missing_docs)]
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
        // The flags over `[bridge]` (no doc comment: clap would read it
        // as help text).
        #[allow(missing_docs)]
        #[command(flatten)]
        bridge: BridgeArgs,
    },
}

/// Runs `framering bridge send` or `recv`: the config with the flags
/// applied, the summary printed, the exit code of how it ended.
pub fn run(cmd: BridgeCmd) -> anyhow::Result<i32> {
    crate::app::signals::install();
    super::start_watchdog(std::time::Duration::from_secs(3));
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
            let report = send::run_send(&ring, &cfg, &bridge.run_options("bridge_send", &ring)?)?;
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
                    eprintln!(
                        "error: the sender was lost (--exit-on-loss): the local stream was ended"
                    );
                    exit::SENDER_LOST
                }
            })
        }
    }
}
