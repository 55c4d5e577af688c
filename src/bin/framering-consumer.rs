//! Takes frames from a shared-memory frame ring and writes them out. See
//! README.md.
//!
//! Exit codes: 0 end of stream (or stopped by a signal); 1 failure (an
//! output that failed: the frames it had not written are handed back
//! unconsumed to the group); 2 bad config/flags or an output that cannot
//! be written, found before any frame is taken; 3 ring refused (absent
//! after --wait-timeout, other shape, corrupt, full); 4 the producer died
//! (after consuming all it published).

use clap::Parser;
use framering::app::cli::{self, RingArgs};
use framering::app::consumer::{ConsumerEnd, ShapeDemand};
use framering::app::exit;
use framering::media::sink::OutputFormat;

#[derive(Parser, Debug)]
#[command(version, about = "Take frames from a shared-memory frame ring")]
struct Args {
    #[command(flatten)]
    ring: RingArgs,
    /// consumer.output: a directory, a video file (.mp4, .mkv, .y4m, ...),
    /// "-" (raw to stdout) or "null"
    #[arg(long)]
    output: Option<String>,
    /// consumer.group: the group to join (every group gets every frame)
    #[arg(long)]
    group: Option<String>,
    /// consumer.latest: skip to the newest frame each time (previews)
    #[arg(long)]
    latest: bool,
    /// consumer.hold_ms: hold each frame this long (simulated work)
    #[arg(long)]
    hold_ms: Option<f64>,
    /// consumer.video_fps: frame rate of a video output
    #[arg(long)]
    video_fps: Option<f64>,
    /// consumer.ffmpeg: the ffmpeg program (for a video output)
    #[arg(long)]
    ffmpeg: Option<String>,
    /// consumer.format
    #[arg(long, value_enum)]
    format: Option<OutputFormat>,
    /// consumer.jpeg_quality
    #[arg(long)]
    jpeg_quality: Option<u8>,
    /// consumer.wait_timeout_secs: how long to wait for the ring to appear
    #[arg(long)]
    wait_timeout: Option<f64>,
    /// consumer.live: if this consumer creates its group, make it live
    /// (drop-oldest: never slows the producer, loses what it cannot keep up
    /// with)
    #[arg(long)]
    live: bool,
    /// Accept any frame shape even if --height/--width/--channels/--dtype are given
    /// (without them the consumer adopts the ring's shape anyway).
    #[arg(long)]
    any_shape: bool,
}

impl cli::Quiet for Args {
    fn quiet(&self) -> bool {
        self.ring.quiet
    }
}

fn run(args: Args) -> anyhow::Result<i32> {
    args.ring.refuse_producer_flags()?;
    let mut cfg = args.ring.load(cli::config_flag_given())?;
    let c = &mut cfg.consumer;
    cli::set(&mut c.output, args.output);
    cli::set(&mut c.format, args.format);
    cli::set(&mut c.jpeg_quality, args.jpeg_quality);
    cli::set(&mut c.wait_timeout_secs, args.wait_timeout);
    cli::set(&mut c.group, args.group);
    c.latest |= args.latest;
    c.live |= args.live;
    cli::set(&mut c.hold_ms, args.hold_ms);
    cli::set(&mut c.video_fps, args.video_fps.map(Some));
    cli::set(&mut cfg.consumer.ffmpeg, args.ffmpeg);
    framering::ring::signals::install();
    // Adopt the ring's shape, except for dimensions given on the command
    // line (config-file dimensions describe the producer's ring).
    let demand = if args.any_shape {
        ShapeDemand::default()
    } else {
        ShapeDemand {
            height: args.ring.height,
            width: args.ring.width,
            channels: args.ring.channels,
            dtype: args.ring.dtype,
        }
    };
    let report = framering::app::consumer::run_consumer(
        &cfg,
        demand,
        &args.ring.run_options("consumer", &cfg.ring.name)?,
    )?;
    if !args.ring.quiet {
        eprintln!("{}", report.summary.render());
        if let Some(sum) = report.checksum {
            eprintln!("consumer: checksum {sum:016x}");
        }
    }
    if let Some(path) = &args.ring.stats_json {
        report.summary.write_json(path)?;
    }
    Ok(match report.end {
        ConsumerEnd::EndOfStream | ConsumerEnd::Stopped => exit::OK,
        // Named after the summary, which says what was handed back.
        ConsumerEnd::OutputFailed { error } => exit::report_error(&error),
        ConsumerEnd::ProducerGone { pid } => {
            eprintln!(
                "error: the producer (pid {pid}) died before ending the stream; every frame it published was consumed"
            );
            exit::PRODUCER_GONE
        }
        ConsumerEnd::ProducerFailed { reason } => {
            eprintln!("error: the producer failed: {reason}; every frame it published that could be taken was consumed");
            exit::FAILURE
        }
    })
}

fn main() {
    // The ring's flags only a producer uses are hidden (and refused).
    cli::main_with_command::<Args>(
        |mut c| {
            for id in cli::PRODUCER_ONLY {
                c = c.mut_arg(id, |a| a.hide(true));
            }
            c
        },
        run,
    )
}
