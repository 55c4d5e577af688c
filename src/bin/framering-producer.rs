//! Decodes images into a shared-memory frame ring. See README.md.
//!
//! Exit codes: 0 done; 1 failure; 2 bad config/flags/input; 3 ring refused
//! (in use by a live producer, corrupt); 130 interrupted twice.

use clap::Parser;
use framering::app::cli::{self, RingArgs};
use framering::app::config::{BackpressureKind, SourceKind};
use framering::app::exit;
use framering::media::decode::{JpegDecoder, ShapePolicy};

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Decode images, video (through ffmpeg) or raw frames into a shared-memory frame ring"
)]
struct Args {
    #[command(flatten)]
    ring: RingArgs,
    /// producer.input: image file, directory or glob; a video file, URL or
    /// device (ffmpeg); or "-" for raw frames on stdin
    #[arg(long)]
    input: Option<String>,
    /// producer.source: what --input is (auto by default)
    #[arg(long, value_enum)]
    source: Option<SourceKind>,
    /// producer.ffmpeg: the ffmpeg program
    #[arg(long)]
    ffmpeg: Option<String>,
    /// producer.fps_limit: publish at most F frames per second
    #[arg(long, value_name = "F")]
    fps_limit: Option<f64>,
    /// producer.realtime: publish video at its own frame rate
    #[arg(long)]
    realtime: bool,
    /// ring.backpressure: block (lossless) or drop_oldest (live)
    #[arg(long, value_enum)]
    backpressure: Option<BackpressureKind>,
    /// ring.groups: groups that get every frame from the start (comma
    /// separated, NAME or NAME:live, e.g. rec,preview:live; "" for none)
    #[arg(long, value_delimiter = ',', num_args = 0..)]
    groups: Option<Vec<String>>,
    /// ring.group_linger_secs: how long an ad-hoc group whose last consumer
    /// died keeps its frames for a consumer that restarts
    #[arg(long, value_name = "SECS")]
    group_linger: Option<f64>,
    /// producer.wait_groups: publish nothing until this many groups joined
    #[arg(long, value_name = "N")]
    wait_groups: Option<u32>,
    /// producer.recursive
    #[arg(long)]
    recursive: bool,
    /// producer.shape_policy
    #[arg(long, value_enum)]
    shape_policy: Option<ShapePolicy>,
    /// producer.decode_threads (0 = one per core)
    #[arg(long)]
    decode_threads: Option<u32>,
    /// producer.jpeg_decoder
    #[arg(long, value_enum)]
    jpeg_decoder: Option<JpegDecoder>,
    /// producer.decode_memory_mb: MiB all decoder threads may use at once
    #[arg(long, value_name = "MB")]
    decode_memory_mb: Option<u64>,
    /// producer.loop: replay the inputs N times
    #[arg(long = "loop", value_name = "N")]
    loops: Option<u32>,
    /// producer.loop_cache_mb
    #[arg(long)]
    loop_cache_mb: Option<u64>,
    /// producer.drain_timeout_secs
    #[arg(long)]
    drain_timeout: Option<f64>,
    /// producer.stop_timeout_secs: after SIGINT/SIGTERM, wait at most this
    /// long for consumers
    #[arg(long)]
    stop_timeout: Option<f64>,
    /// producer.keep: leave the segment in /dev/shm at exit
    #[arg(long)]
    keep: bool,
}

impl cli::Quiet for Args {
    fn quiet(&self) -> bool {
        self.ring.quiet
    }
}

fn run(args: Args) -> anyhow::Result<i32> {
    let mut cfg = args.ring.load(cli::config_flag_given())?;
    let p = &mut cfg.producer;
    cli::set(&mut p.input, args.input);
    p.recursive |= args.recursive;
    cli::set(&mut p.shape_policy, args.shape_policy);
    cli::set(&mut p.decode_threads, args.decode_threads);
    cli::set(&mut p.jpeg_decoder, args.jpeg_decoder);
    cli::set(&mut p.decode_memory_mb, args.decode_memory_mb);
    cli::set(&mut p.loops, args.loops);
    cli::set(&mut p.loop_cache_mb, args.loop_cache_mb);
    cli::set(&mut p.drain_timeout_secs, args.drain_timeout);
    cli::set(&mut p.stop_timeout_secs, args.stop_timeout);
    p.keep |= args.keep;
    cli::set(&mut p.source, args.source);
    cli::set(&mut p.ffmpeg, args.ffmpeg);
    cli::set(&mut p.fps_limit, args.fps_limit);
    p.realtime |= args.realtime;
    cli::set(&mut p.wait_groups, args.wait_groups);
    cli::set(&mut cfg.ring.backpressure, args.backpressure);
    cli::set(&mut cfg.ring.group_linger_secs, args.group_linger);
    cli::set(
        &mut cfg.ring.groups,
        args.groups
            .map(|g| g.into_iter().filter(|n| !n.is_empty()).collect()),
    );
    framering::ring::signals::install();
    let report = framering::app::producer::run_producer(
        &cfg,
        &args.ring.run_options("producer", &cfg.ring.name)?,
    )?;
    if !args.ring.quiet {
        eprintln!("{}", report.summary.render());
    }
    if let Some(path) = &args.ring.stats_json {
        report.summary.write_json(path)?;
    }
    // Interrupted with frames left unconsumed (a second signal, or
    // stop_timeout_secs passed): not a clean end.
    let stopped = framering::ring::signals::stop_requested();
    Ok(
        if framering::ring::signals::received() >= 2 || (stopped && !report.drained) {
            exit::INTERRUPTED
        } else {
            exit::OK
        },
    )
}

fn main() {
    cli::main_with::<Args>(run)
}
