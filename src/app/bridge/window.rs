//! Live mode's window: how many frames a live sender keeps in flight (sent,
//! not yet acknowledged by a receiver), sized to the link's
//! bandwidth-delay product.
//!
//! One frame in flight ties the frame rate to the round trip: a frame takes
//! its transmission time plus the link's delay, and the link idles while the
//! acknowledgement travels back. A window of frames fills the link, but every
//! frame beyond what the link holds waits in a queue (zenoh's, the kernel's,
//! the network's) and arrives older. So the window is the bandwidth-delay
//! product in frames, `rate × round trip`, where the round trip is the
//! fastest one seen (a frame that did not queue: its transmission plus the
//! delay) and the rate is the fastest delivery rate seen: for each frame
//! acknowledged, the frames acknowledged since the acknowledgement before
//! it was sent (itself included) over that time ([BBR]'s delivery-rate
//! sample). It is rounded up, less [`SLACK`] of a frame, so that a link
//! whose product is just over one frame (1080p on a LAN) keeps one frame in
//! flight rather than queueing a second one behind it.
//!
//! A window carries no more than it is, so its own rate cannot show that a
//! larger one would carry more: every [`PROBE_EVERY`] the sender sends one
//! frame beyond it (a probe), right after an acknowledgement (so that its
//! delivery rate counts no idle wait before it was sent), whose delivery
//! rate shows whether the link had room; while probes open the window, the
//! next probe follows at once (a quick start on a long link). Estimates age out ([`RATE_SPAN`],
//! [`RTT_SPAN`]), so a link that slows down shrinks the window.
//!
//! Pure bookkeeping (times are passed in): the sending loop feeds it sends
//! and acknowledgements.
//!
//! [BBR]: https://datatracker.ietf.org/doc/draft-ietf-ccwg-bbr/

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How long the fastest round trip is remembered.
const RTT_SPAN: Duration = Duration::from_secs(10);
/// How long the fastest delivery rate is remembered.
const RATE_SPAN: Duration = Duration::from_secs(2);
/// How often a sender whose window is full sends one frame beyond it.
const PROBE_EVERY: Duration = Duration::from_millis(500);
/// The part of a frame by which the product may exceed the window: a frame
/// that would wait most of its transmission time behind another one is
/// not sent.
const SLACK: f64 = 0.1;
/// How soon after an acknowledgement a probe may go out.
const PROBE_SLACK: Duration = Duration::from_millis(2);

/// The smallest (or largest) value seen over about `span`: kept in two
/// halves, the current one and the one before it.
#[derive(Debug)]
struct Extreme {
    span: Duration,
    largest: bool,
    /// The current half: when it started, its extreme.
    half: Option<(Instant, f64)>,
    /// The half before it, if it ended less than `span / 2` ago.
    before: Option<f64>,
}

impl Extreme {
    fn new(span: Duration, largest: bool) -> Extreme {
        Extreme {
            span,
            largest,
            half: None,
            before: None,
        }
    }

    fn pick(&self, a: f64, b: f64) -> f64 {
        if self.largest {
            a.max(b)
        } else {
            a.min(b)
        }
    }

    fn add(&mut self, v: f64, now: Instant) {
        match self.half {
            Some((start, x)) if now.saturating_duration_since(start) < self.span / 2 => {
                self.half = Some((start, self.pick(x, v)));
            }
            Some((start, x)) => {
                let recent = now.saturating_duration_since(start) < self.span;
                self.before = recent.then_some(x);
                self.half = Some((now, v));
            }
            None => self.half = Some((now, v)),
        }
    }

    fn get(&self) -> Option<f64> {
        match (self.half, self.before) {
            (Some((_, x)), Some(y)) => Some(self.pick(x, y)),
            (Some((_, x)), None) => Some(x),
            _ => None,
        }
    }
}

/// A frame in flight.
#[derive(Debug)]
struct Sent {
    seq: u64,
    at: Instant,
    /// Frames delivered when it was sent, and when the last of them was
    /// (or when it was sent, after an idle link).
    delivered: u64,
    delivered_at: Instant,
    /// Sent beyond the window.
    probe: bool,
}

/// The frames a live sender has in flight and the window they may fill.
#[derive(Debug)]
pub(crate) struct LiveWindow {
    max: usize,
    flight: VecDeque<Sent>,
    /// Frames acknowledged so far, and when the last one was (or the
    /// first frame sent after an idle link).
    delivered: u64,
    delivered_at: Option<Instant>,
    /// Seconds.
    rtt: Extreme,
    /// Frames per second.
    rate: Extreme,
    window: usize,
    largest: usize,
    last_probe: Option<Instant>,
    /// Frames let go without an acknowledgement.
    unacknowledged: u64,
}

/// What a window measured, for the sender's log.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct WindowReport {
    pub window: usize,
    pub largest: usize,
    pub rtt_ms: Option<f64>,
    pub rate_fps: Option<f64>,
    pub unacknowledged: u64,
}

impl LiveWindow {
    /// A window of 1 to `max` frames (`max` ≥ 1).
    pub(crate) fn new(max: usize) -> LiveWindow {
        LiveWindow {
            max: max.max(1),
            flight: VecDeque::with_capacity(max.max(1) + 1),
            delivered: 0,
            delivered_at: None,
            rtt: Extreme::new(RTT_SPAN, false),
            rate: Extreme::new(RATE_SPAN, true),
            window: 1,
            largest: 1,
            last_probe: None,
            unacknowledged: 0,
        }
    }

    /// Whether a frame may be sent now: fewer than the window in flight, or
    /// a full window and a probe due.
    pub(crate) fn room(&self, now: Instant) -> bool {
        let n = self.flight.len();
        n < self.window || (n == self.window && self.window < self.max && self.probe_due(now))
    }

    fn probe_due(&self, now: Instant) -> bool {
        self.delivered_at
            .is_some_and(|t| now.saturating_duration_since(t) <= PROBE_SLACK)
            && !self.flight.iter().any(|s| s.probe)
            && self
                .last_probe
                .map_or(true, |t| now.saturating_duration_since(t) >= PROBE_EVERY)
    }

    /// Frame `seq` was sent at `now`.
    pub(crate) fn sent(&mut self, seq: u64, now: Instant) {
        let probe = self.flight.len() >= self.window;
        if probe {
            self.last_probe = Some(now);
        }
        // After an idle link the rate counts from this send, not from the
        // last acknowledgement (the idle time is not the link's).
        if self.flight.is_empty() {
            self.delivered_at = Some(now);
        }
        self.flight.push_back(Sent {
            seq,
            at: now,
            delivered: self.delivered,
            delivered_at: self.delivered_at.unwrap_or(now),
            probe,
        });
    }

    /// A receiver has every frame up to `acked` (the highest seq any
    /// receiver acknowledged); frames in flight longer than `timeout`
    /// without one are let go (a lost acknowledgement, a receiver of an
    /// older version).
    pub(crate) fn acked(&mut self, acked: Option<u64>, now: Instant, timeout: Duration) {
        let mut probed = false;
        let mut any = false;
        while let Some(f) = self.flight.front() {
            if acked.is_some_and(|a| a >= f.seq) {
                self.delivered += 1;
                self.delivered_at = Some(now);
                self.rtt
                    .add(now.saturating_duration_since(f.at).as_secs_f64(), now);
                let span = now.saturating_duration_since(f.delivered_at).as_secs_f64();
                if span > 0.0 {
                    self.rate
                        .add((self.delivered - f.delivered) as f64 / span, now);
                }
                probed |= f.probe;
                any = true;
            } else if now.saturating_duration_since(f.at) > timeout {
                self.unacknowledged += 1;
            } else {
                break;
            }
            self.flight.pop_front();
        }
        if !any {
            return;
        }
        let before = self.window;
        if let (Some(rtt), Some(rate)) = (self.rtt.get(), self.rate.get()) {
            let bdp = rate * rtt;
            self.window = ((bdp - SLACK).ceil() as usize).clamp(1, self.max);
        }
        self.largest = self.largest.max(self.window);
        if probed && self.window > before {
            // The probe found room: probe again at once.
            self.last_probe = None;
        }
    }

    /// Frames in flight.
    #[cfg(test)]
    pub(crate) fn in_flight(&self) -> usize {
        self.flight.len()
    }

    pub(crate) fn report(&self) -> WindowReport {
        WindowReport {
            window: self.window,
            largest: self.largest,
            rtt_ms: self.rtt.get().map(|s| s * 1e3),
            rate_fps: self.rate.get(),
            unacknowledged: self.unacknowledged,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A link that carries one frame per `tx` and delivers it `delay`
    /// later, its acknowledgement arriving after another `delay`; the
    /// sender sends whenever the window has room. Returns the window after
    /// `secs` and the frames delivered per second over the last half.
    fn simulate(tx_ms: f64, delay_ms: f64, max: usize, secs: f64) -> (WindowReport, f64) {
        let t0 = Instant::now();
        let at = |ms: f64| t0 + Duration::from_secs_f64(ms / 1e3);
        let mut w = LiveWindow::new(max);
        // Acknowledgements due: (time ms, seq).
        let mut acks: VecDeque<(f64, u64)> = VecDeque::new();
        let (mut now, mut link_free, mut seq) = (0.0_f64, 0.0_f64, 0_u64);
        let mut acked_times = vec![];
        let end = secs * 1e3;
        while now < end {
            while let Some(&(t, s)) = acks.front() {
                if t > now {
                    break;
                }
                acks.pop_front();
                w.acked(Some(s), at(t), Duration::from_secs(1));
                acked_times.push(t);
            }
            if w.room(at(now)) {
                seq += 1;
                w.sent(seq, at(now));
                let done = link_free.max(now) + tx_ms;
                link_free = done;
                acks.push_back((done + 2.0 * delay_ms, seq));
                continue;
            }
            // Next event: the next acknowledgement (or a probe being due).
            now = acks.front().map_or(now + 1.0, |&(t, _)| t).min(now + 10.0);
        }
        let half = acked_times.iter().filter(|&&t| t >= end / 2.0).count();
        (w.report(), half as f64 / (secs / 2.0))
    }

    #[test]
    fn a_long_link_opens_the_window_to_its_bandwidth_delay_product() {
        // 37 ms per frame (230 KB at 50 Mbit/s), 20 ms each way: one frame
        // in flight carries 1 / 77 ms = 13 fps of the link's 27.
        let (r, fps) = simulate(37.0, 20.0, 7, 10.0);
        assert_eq!(r.window, 2, "{r:?}");
        assert!(fps > 0.9 * 1000.0 / 37.0, "{fps} fps, {r:?}");
        // 9 ms per frame, 20 ms each way: a product of 5.4 frames.
        let (r, fps) = simulate(9.0, 20.0, 7, 10.0);
        assert!((5..=6).contains(&r.window), "{r:?}");
        assert!(fps > 0.85 * 1000.0 / 9.0, "{fps} fps, {r:?}");
    }

    #[test]
    fn a_link_whose_product_is_one_frame_keeps_one_in_flight() {
        // 1080p at 1 Gbit/s on a LAN: 50 ms per frame, 0.5 ms each way; a
        // second frame in flight would only wait behind the first.
        let (r, fps) = simulate(50.0, 0.5, 7, 10.0);
        assert_eq!(r.window, 1, "{r:?}");
        assert!(fps > 0.95 * 20.0, "{fps} fps");
    }

    #[test]
    fn the_window_is_bounded() {
        let (r, _) = simulate(1.0, 20.0, 4, 5.0);
        assert_eq!(r.window, 4, "{r:?}");
        let (r, _) = simulate(1.0, 20.0, 1, 5.0);
        assert_eq!(r.window, 1, "{r:?}");
    }

    #[test]
    fn frames_never_acknowledged_are_let_go() {
        let t0 = Instant::now();
        let mut w = LiveWindow::new(4);
        w.sent(1, t0);
        w.acked(None, t0 + Duration::from_secs(2), Duration::from_secs(1));
        assert_eq!(w.in_flight(), 0);
        assert_eq!(w.report().unacknowledged, 1);
        assert!(w.room(t0 + Duration::from_secs(2)));
    }
}
