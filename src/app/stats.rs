//! Frame counters, throughput and publish→consume latency, with periodic
//! progress and a final summary (text or JSON).

use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Running statistics of one process.
#[derive(Debug)]
pub struct Stats {
    role: &'static str,
    start: Instant,
    frames: u64,
    bytes: u64,
    latency_ns: Histogram<u64>,
    skipped: BTreeMap<&'static str, u64>,
    redelivered: u64,
    dropped: u64,
    last_report: Instant,
    frames_at_report: u64,
    every: Duration,
    bar: Option<indicatif::ProgressBar>,
    quiet: bool,
    metrics: Option<std::sync::Arc<super::metrics::Metrics>>,
    /// Why the process is blocked, while it is (shown instead of rates).
    waiting: Option<String>,
    /// The producer is blocked waiting for a first consumer.
    waiting_first: bool,
    /// How long the producer waited for a first consumer (not counted in
    /// the rates).
    waited: Duration,
}

/// How a long run shows its progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Nothing.
    Quiet,
    /// A log line every few seconds (stderr is not a terminal).
    Lines,
    /// A live progress bar (stderr is a terminal).
    Bar,
}

impl Progress {
    /// A bar on a terminal, lines otherwise; nothing with `quiet`.
    pub fn auto(quiet: bool) -> Self {
        use std::io::IsTerminal;
        if quiet {
            Progress::Quiet
        } else if std::io::stderr().is_terminal() {
            Progress::Bar
        } else {
            Progress::Lines
        }
    }
}

fn make_bar(role: &str, total: Option<u64>) -> indicatif::ProgressBar {
    use indicatif::{ProgressBar, ProgressStyle};
    let (bar, template) = match total {
        Some(n) => (
            ProgressBar::new(n),
            "{prefix} {bar:30} {pos}/{len} frames  {fps}  ETA {eta}",
        ),
        None => (
            ProgressBar::new_spinner(),
            "{prefix} {spinner} {pos} frames  {fps}",
        ),
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.with_key(
            "fps",
            |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{:.0} fps", s.per_sec());
            },
        ));
    }
    bar.set_prefix(role.to_string());
    bar
}

/// "waiting: why", unless `why` already says it waits ("waiting for input
/// on stdin").
fn waiting_text(why: &str) -> String {
    if why.starts_with("waiting") {
        why.to_string()
    } else {
        format!("waiting: {why}")
    }
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    /// Median.
    pub p50_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// Largest.
    pub max_us: f64,
}

/// The final summary.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// "producer" or "consumer".
    pub role: &'static str,
    /// Frames published or consumed.
    pub frames: u64,
    /// Wall time (for a producer, from its first consumer's arrival).
    pub seconds: f64,
    /// Producer: seconds it waited for a first consumer before publishing
    /// (not in `seconds`).
    pub waited_secs: f64,
    /// Frames per second.
    pub fps: f64,
    /// Megabytes (10⁶) of frame data per second.
    pub mb_per_s: f64,
    /// Publish→consume latency (consumers only).
    pub latency: Option<Latency>,
    /// Inputs skipped, by reason.
    pub skipped: BTreeMap<&'static str, u64>,
    /// Total inputs skipped.
    pub skipped_total: u64,
    /// Frames delivered again after a consumer died or handed them back
    /// unconsumed (producer), or frames received that had been delivered
    /// before (consumer).
    pub redelivered: u64,
    /// Frames dropped: by the producer (drop-oldest, or no group
    /// subscribed), or lost by the consumer's group.
    pub dropped: u64,
    /// Producer: frames each group lost, by group name. Consumer: its group.
    pub groups: BTreeMap<String, u64>,
    /// Producer: of `groups`, the lossless groups' losses: frames they had
    /// queued, released unread when their last consumer left (or their
    /// linger ended). Not drops: no backpressure dropped them.
    pub released: BTreeMap<String, u64>,
    /// Consumer: frames skipped to stay on the newest (`--latest`).
    pub latest_skipped: u64,
    /// Producer: frames published but never consumed, left behind when it
    /// stopped waiting (a stop signal and `stop_timeout_secs`, or a
    /// `drain_timeout_secs`).
    pub abandoned: u64,
    /// Consumer: frames handed back unconsumed because its output failed
    /// (delivered again to the group's next consumer).
    pub given_back: u64,
    /// Consumer: frames its failed output had accepted and that are not in
    /// it, that it could not hand back (a compressed video is complete only
    /// when ffmpeg finishes).
    pub lost: u64,
    /// Consumer: why its output failed.
    pub output_error: Option<String>,
}

impl Stats {
    /// Starts the clock; progress every `every` (log lines), or a live bar;
    /// `total` frames when known.
    pub fn new(
        role: &'static str,
        every: Duration,
        progress: Progress,
        total: Option<u64>,
    ) -> Self {
        let now = Instant::now();
        let bar = (progress == Progress::Bar).then(|| make_bar(role, total));
        Self {
            role,
            start: now,
            frames: 0,
            bytes: 0,
            latency_ns: Histogram::new_with_bounds(1, 600_000_000_000, 3).expect("valid bounds"),
            skipped: BTreeMap::new(),
            redelivered: 0,
            dropped: 0,
            last_report: now,
            frames_at_report: 0,
            every,
            bar,
            quiet: progress == Progress::Quiet,
            waiting: None,
            waiting_first: false,
            waited: Duration::ZERO,
            metrics: None,
        }
    }

    /// Also keeps these Prometheus metrics up to date.
    pub fn with_metrics(
        mut self,
        metrics: Option<std::sync::Arc<super::metrics::Metrics>>,
    ) -> Self {
        self.metrics = metrics;
        self
    }

    /// Reports how many slots this process holds (a gauge; metrics only).
    #[inline]
    pub fn set_slots_in_use(&self, n: usize) {
        if let Some(m) = &self.metrics {
            m.slots_in_use.set(n as i64);
        }
    }

    /// Reports the running total of dropped frames.
    #[inline]
    pub fn set_dropped(&mut self, total: u64) {
        if total > self.dropped {
            if let Some(m) = &self.metrics {
                m.drops.inc_by(total - self.dropped);
            }
            self.dropped = total;
        }
    }

    /// Restarts the clock (e.g. when the first frame arrives).
    pub fn restart_clock(&mut self) {
        self.start = Instant::now();
        self.last_report = self.start;
    }

    /// Counts a frame of `bytes` bytes; `latency_ns` for consumers.
    #[inline]
    pub fn frame(&mut self, bytes: usize, latency_ns: Option<u64>) {
        self.frames += 1;
        self.bytes += bytes as u64;
        if let Some(l) = latency_ns {
            self.latency_ns.saturating_record(l.max(1));
        }
        if let Some(m) = &self.metrics {
            m.frames.inc();
            m.bytes.inc_by(bytes as u64);
            if let Some(l) = latency_ns {
                m.latency.observe(l as f64 / 1e9);
            }
        }
    }

    /// Counts a skipped input.
    pub fn skip(&mut self, reason: &'static str) {
        *self.skipped.entry(reason).or_default() += 1;
        if let Some(m) = &self.metrics {
            m.skipped
                .get_or_create(&super::metrics::ReasonLabel {
                    reason: reason.to_string(),
                })
                .inc();
        }
    }

    /// Counts one redelivered frame.
    pub fn redelivery(&mut self) {
        self.redelivered += 1;
        if let Some(m) = &self.metrics {
            m.redeliveries.inc();
        }
    }

    /// Frames so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Logs a progress line if the period has passed. Cheap to call per frame.
    #[inline]
    pub fn tick(&mut self) {
        if self.frames & 63 != 0 && self.frames > 0 {
            return;
        }
        self.tick_now();
    }

    /// Logs a progress line if the period has passed.
    pub fn tick_now(&mut self) {
        if self.quiet {
            return;
        }
        if let Some(bar) = &self.bar {
            // indicatif limits its own redraw rate.
            bar.set_position(self.frames);
            if let Some(w) = &self.waiting {
                bar.set_prefix(format!("{} ({})", self.role, waiting_text(w)));
            }
            return;
        }
        let now = Instant::now();
        let dt = now - self.last_report;
        if dt < self.every {
            return;
        }
        let n = self.frames - self.frames_at_report;
        if let Some(w) = &self.waiting {
            tracing::info!("{}: {} frames; {}", self.role, self.frames, waiting_text(w));
            self.last_report = now;
            self.frames_at_report = self.frames;
            return;
        }
        tracing::info!(
            "{}: {} frames, {:.1} fps now, {:.1} fps overall",
            self.role,
            self.frames,
            n as f64 / dt.as_secs_f64(),
            self.frames as f64 / (now - self.start).as_secs_f64().max(1e-9),
        );
        self.last_report = now;
        self.frames_at_report = self.frames;
    }

    /// Says why the producer is blocked; `first_consumer`: it waits for a
    /// first consumer before publishing anything. That wait ends at the next
    /// `set_waiting(None)`; it is reported apart and the rates start after it.
    pub fn set_blocked(&mut self, why: String, first_consumer: bool) {
        self.waiting_first |= first_consumer && self.frames == 0;
        self.set_waiting(Some(why));
    }

    /// Says why the process is blocked (`None`: it is not), for the next
    /// progress line or the bar.
    pub fn set_waiting(&mut self, why: Option<String>) {
        if why.is_none() && self.waiting_first {
            self.waiting_first = false;
            self.waited += self.start.elapsed();
            self.restart_clock();
        }
        if why.is_none() && self.waiting.is_some() {
            if let Some(bar) = &self.bar {
                bar.set_prefix(self.role);
            }
        }
        self.waiting = why;
    }

    /// Removes the progress bar, if any (before printing a summary).
    pub fn finish_progress(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }

    /// The summary so far.
    pub fn summary(&self) -> Summary {
        let secs = self.start.elapsed().as_secs_f64().max(1e-9);
        let h = &self.latency_ns;
        let latency = (!h.is_empty()).then(|| Latency {
            p50_us: h.value_at_quantile(0.5) as f64 / 1e3,
            p99_us: h.value_at_quantile(0.99) as f64 / 1e3,
            max_us: h.max() as f64 / 1e3,
        });
        Summary {
            role: self.role,
            frames: self.frames,
            seconds: secs,
            waited_secs: self.waited.as_secs_f64(),
            fps: self.frames as f64 / secs,
            mb_per_s: self.bytes as f64 / secs / 1e6,
            latency,
            skipped_total: self.skipped.values().sum(),
            skipped: self.skipped.clone(),
            redelivered: self.redelivered,
            dropped: self.dropped,
            groups: BTreeMap::new(),
            released: BTreeMap::new(),
            latest_skipped: 0,
            abandoned: 0,
            given_back: 0,
            lost: 0,
            output_error: None,
        }
    }
}

/// `group NAME N, group NAME N`.
fn by_group<'a>(counts: impl IntoIterator<Item = (&'a String, &'a u64)>) -> String {
    let parts: Vec<String> = counts
        .into_iter()
        .map(|(g, n)| format!("group {g} {n}"))
        .collect();
    parts.join(", ")
}

impl Summary {
    /// A human-readable multi-line summary.
    pub fn render(&self) -> String {
        let mut s = format!(
            "{}: {} frames in {:.2} s = {:.1} fps, {:.1} MB/s",
            self.role, self.frames, self.seconds, self.fps, self.mb_per_s
        );
        if self.waited_secs > 0.0 {
            s += &format!(
                " (after waiting {:.2} s for a first consumer)",
                self.waited_secs
            );
        }
        if let Some(l) = &self.latency {
            s += &format!(
                "\n{}: publish->consume latency p50 {:.1} us, p99 {:.1} us, max {:.1} us",
                self.role, l.p50_us, l.p99_us, l.max_us
            );
        }
        if self.skipped_total > 0 {
            let parts: Vec<String> = self
                .skipped
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            s += &format!(
                "\n{}: skipped {} inputs ({})",
                self.role,
                self.skipped_total,
                parts.join(", ")
            );
        }
        if self.redelivered > 0 {
            s += &format!("\n{}: redelivered {} frames", self.role, self.redelivered);
        }
        // Drops (by backpressure) apart from the frames lossless groups had
        // queued when their last consumer left.
        let dropped: Vec<(&String, &u64)> = self
            .groups
            .iter()
            .filter(|(g, &d)| d > 0 && !self.released.contains_key(*g))
            .collect();
        if self.dropped > 0 || !dropped.is_empty() {
            s += &format!(
                "\n{}: dropped {} frames{}",
                self.role,
                self.dropped,
                if dropped.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", by_group(dropped))
                }
            );
        }
        if !self.released.is_empty() {
            s += &format!(
                "\n{}: released {} queued frames unread when their group's last consumer left ({})",
                self.role,
                self.released.values().sum::<u64>(),
                by_group(&self.released)
            );
        }
        if self.latest_skipped > 0 {
            s += &format!(
                "\n{}: skipped {} older frames to stay on the newest",
                self.role, self.latest_skipped
            );
        }
        if self.given_back > 0 {
            s += &format!(
                "\n{}: handed back {} frames unconsumed (the output failed): they go to the group's next consumer",
                self.role, self.given_back
            );
        }
        if self.lost > 0 {
            s += &format!(
                "\n{}: lost {} frames the failed output had accepted",
                self.role, self.lost
            );
        }
        if self.abandoned > 0 {
            s += &format!(
                "\n{}: abandoned {} published frames no consumer took",
                self.role, self.abandoned
            );
        }
        s
    }

    /// Writes the summary as JSON.
    pub fn write_json(&self, path: &std::path::Path) -> std::io::Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(path, text + "\n")
    }
}

/// How a run reports while it goes.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Progress display.
    pub progress: Progress,
    /// Prometheus metrics to keep up to date (and serve).
    pub metrics: Option<std::sync::Arc<super::metrics::Metrics>>,
}

/// How often progress is logged.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(2);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_counts_and_percentiles() {
        let mut s = Stats::new("consumer", Duration::from_secs(3600), Progress::Quiet, None);
        for i in 1..=100u64 {
            s.frame(10, Some(i * 1000));
        }
        s.skip("corrupt");
        s.skip("corrupt");
        s.skip("empty");
        let sum = s.summary();
        assert_eq!(sum.frames, 100);
        assert_eq!(sum.skipped_total, 3);
        assert_eq!(sum.skipped["corrupt"], 2);
        let l = sum.latency.clone().unwrap();
        assert!((49.0..=51.0).contains(&l.p50_us), "{l:?}");
        assert!((99.0..=101.0).contains(&l.max_us), "{l:?}");
        let j = serde_json::to_value(&sum).unwrap();
        assert_eq!(j["frames"], 100);
        assert!(sum.render().contains("skipped 3 inputs"));
    }
}
