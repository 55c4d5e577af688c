//! Prometheus metrics of a producer or consumer, served on `/metrics`.
//!
//! The exposition format comes from `prometheus-client` (OpenMetrics text),
//! the HTTP server from `tiny_http` (one thread). Updating a metric is an
//! atomic add, so the pipeline keeps them up to date per frame.
//!
//! `/metrics` serves OpenMetrics under its own content type; a scraper
//! whose `Accept` asks for the Prometheus text format (`text/plain`) and not
//! OpenMetrics gets that format, in which counter families carry their
//! `_total` name (under the OpenMetrics content type a text-format parser
//! would type every counter `unknown`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::borrow::Cow;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;

/// The content type of [`Metrics::encode`]'s text.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The content type of [`to_prometheus_text`]'s.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Whether a scraper's `Accept` header asks for the Prometheus text format
/// rather than OpenMetrics (the default, and Prometheus's own preference).
fn wants_prometheus_text(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| {
        let a = a.to_ascii_lowercase();
        a.contains("text/plain") && !a.contains("application/openmetrics-text")
    })
}

/// OpenMetrics text as the Prometheus text format 0.0.4: a counter family's
/// `# HELP`/`# TYPE` lines name it with its samples' `_total` suffix, and
/// `# UNIT` and `# EOF` lines (which that format has not) go.
fn to_prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| Some((p, line.strip_prefix(p)?.split_once(' ')?)));
        match meta {
            Some((prefix, (name, rest))) if counters.contains(name) => {
                out.push_str(&format!("{prefix}{name}_total {rest}"));
            }
            Some(("# TYPE ", (name, "unknown"))) => {
                out.push_str(&format!("# TYPE {name} untyped"));
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// Label of the skipped-inputs counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// Why the input was skipped.
    pub reason: String,
}

/// The metrics of one process.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Frames published (producer) or consumed (consumer).
    pub frames: Counter,
    /// Bytes of those frames.
    pub bytes: Counter,
    /// Frames dropped (reserved for the drop-oldest policy; 0 today).
    pub drops: Counter,
    /// Frames delivered again after a consumer died.
    pub redeliveries: Counter,
    /// Inputs skipped, by reason.
    pub skipped: Family<ReasonLabel, Counter>,
    /// Publish→consume latency in seconds (consumers).
    pub latency: Histogram,
    /// Slots this process holds now.
    pub slots_in_use: Gauge,
}

impl Metrics {
    /// Registers the metrics of a `role` ("producer" or "consumer").
    /// Metrics of `role` (`producer`/`consumer`) on ring `ring`: every
    /// series carries a `ring` label, so that the processes of several rings
    /// on one host scrape into one Prometheus.
    pub fn new(role: &str, ring: &str) -> Arc<Metrics> {
        let mut registry = Registry::with_prefix_and_labels(
            format!("framering_{role}"),
            [(Cow::Borrowed("ring"), Cow::Owned(ring.to_string()))].into_iter(),
        );
        let m = Metrics {
            registry: Registry::default(),
            frames: Counter::default(),
            bytes: Counter::default(),
            drops: Counter::default(),
            redeliveries: Counter::default(),
            skipped: Family::default(),
            // 1 µs .. ~8 s.
            latency: Histogram::new(exponential_buckets(1e-6, 2.0, 24)),
            slots_in_use: Gauge::default(),
        };
        registry.register("frames", "Frames handled", m.frames.clone());
        registry.register("bytes", "Bytes of frames handled", m.bytes.clone());
        registry.register("drops", "Frames dropped", m.drops.clone());
        registry.register(
            "redeliveries",
            "Frames delivered again after their consumer died",
            m.redeliveries.clone(),
        );
        registry.register(
            "skipped_inputs",
            "Inputs skipped, by reason",
            m.skipped.clone(),
        );
        registry.register(
            "latency_seconds",
            "Publish to consume latency",
            m.latency.clone(),
        );
        registry.register(
            "slots_in_use",
            "Slots held by this process",
            m.slots_in_use.clone(),
        );
        Arc::new(Metrics { registry, ..m })
    }

    /// The OpenMetrics text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Serves `/metrics` on `addr` from a background thread. `addr` is
    /// `HOST:PORT`, or just `PORT` for loopback. Returns the bound address.
    pub fn serve(self: &Arc<Self>, addr: &str) -> std::io::Result<SocketAddr> {
        let addr = if addr.parse::<u16>().is_ok() {
            format!("127.0.0.1:{addr}")
        } else {
            addr.to_string()
        };
        let sock = addr
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| std::io::Error::other(format!("cannot resolve {addr}")))?;
        let server = tiny_http::Server::http(sock).map_err(std::io::Error::other)?;
        let bound = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| std::io::Error::other("not an IP listener"))?;
        let me = Arc::clone(self);
        std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || {
                for req in server.incoming_requests() {
                    let resp = if req.url() == "/metrics" {
                        let accept = req
                            .headers()
                            .iter()
                            .find(|h| h.field.equiv("Accept"))
                            .map(|h| h.value.as_str());
                        let (body, ctype) = if wants_prometheus_text(accept) {
                            (to_prometheus_text(&me.encode()), PROMETHEUS_TEXT)
                        } else {
                            (me.encode(), OPENMETRICS)
                        };
                        let header =
                            tiny_http::Header::from_bytes(&b"Content-Type"[..], ctype.as_bytes())
                                .expect("static header");
                        tiny_http::Response::from_string(body).with_header(header)
                    } else {
                        tiny_http::Response::from_string("see /metrics\n").with_status_code(404)
                    };
                    let _ = req.respond(resp);
                }
            })?;
        Ok(bound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_prometheus_text() {
        let m = Metrics::new("consumer", "cam0");
        m.frames.inc_by(3);
        m.skipped
            .get_or_create(&ReasonLabel {
                reason: "corrupt".into(),
            })
            .inc();
        m.latency.observe(0.001);
        let text = m.encode();
        assert!(
            text.contains("framering_consumer_frames_total{ring=\"cam0\"} 3"),
            "{text}"
        );
        assert!(
            text.contains(
                "framering_consumer_skipped_inputs_total{ring=\"cam0\",reason=\"corrupt\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("framering_consumer_latency_seconds_count{ring=\"cam0\"} 1"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
        let prom = to_prometheus_text(&text);
        assert!(
            prom.contains("# TYPE framering_consumer_frames_total counter\n"),
            "{prom}"
        );
        assert!(
            prom.contains("# TYPE framering_consumer_latency_seconds histogram\n"),
            "{prom}"
        );
        assert!(
            !prom.contains("# EOF") && !prom.contains("# UNIT"),
            "{prom}"
        );
    }

    #[test]
    fn the_format_follows_the_accept_header() {
        assert!(!wants_prometheus_text(None));
        assert!(!wants_prometheus_text(Some("*/*")));
        // Prometheus's own header prefers OpenMetrics.
        assert!(!wants_prometheus_text(Some(
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
        )));
        assert!(wants_prometheus_text(Some("text/plain;version=0.0.4")));
    }
}
