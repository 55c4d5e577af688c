//! Prometheus metrics of a producer or consumer, served on `/metrics`.
//!
//! The exposition format comes from `prometheus-client`, the HTTP server from
//! `tiny_http` (one thread). Updating a metric is an atomic add, so the
//! pipeline keeps them up to date per frame.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::borrow::Cow;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;

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

    /// The Prometheus text exposition of every metric.
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
                        let header = tiny_http::Header::from_bytes(
                            &b"Content-Type"[..],
                            &b"text/plain; version=0.0.4; charset=utf-8"[..],
                        )
                        .expect("static header");
                        tiny_http::Response::from_string(me.encode()).with_header(header)
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
    }
}
