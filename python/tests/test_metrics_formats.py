"""`--metrics-addr`: /metrics parsed by real parsers of both exposition
formats (prometheus_client's): OpenMetrics under its own content type by
default and for Prometheus's Accept header, the Prometheus text format when
a scraper asks for text/plain; every counter typed `counter` by either."""

import signal
import socket
import subprocess
import urllib.request

from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_text

from conftest import REPO, binary, wait_for

COUNTERS = ("frames", "bytes", "drops", "redeliveries", "skipped_inputs")
# What Prometheus 2.x/3.x sends.
PROMETHEUS_ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
                     "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port, accept=None):
    headers = {"Accept": accept} if accept else {}
    req = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers=headers)
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.headers["Content-Type"], r.read().decode()


def types(families):
    return {f.name: f.type for f in families}


def test_metrics_parse_as_their_content_type_says(ring, empty_config):
    port = free_port()
    # A declared group: frames are published with no consumer attached.
    producer = subprocess.Popen(
        [binary("framering-producer"), "--config", empty_config, "--ring", ring, "-q",
         "--height", "36", "--width", "48", "--groups", "g", "--loop", "1000",
         "--input", str(REPO / "assets"), "--stop-timeout", "0",
         "--metrics-addr", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        def published():
            try:
                return 'framering_producer_frames_total{ring="%s"} 0\n' % ring not in scrape(port)[1]
            except OSError:
                return False
        wait_for(published, timeout=60, what="a frame published, seen on /metrics")

        for accept in (None, "*/*", PROMETHEUS_ACCEPT):
            ctype, body = scrape(port, accept)
            assert ctype == "application/openmetrics-text; version=1.0.0; charset=utf-8", accept
            t = types(parse_openmetrics(body))
            for c in COUNTERS:
                assert t[f"framering_producer_{c}"] == "counter", (accept, t)
            assert t["framering_producer_slots_in_use"] == "gauge"

        ctype, body = scrape(port, "text/plain;version=0.0.4")
        assert ctype == "text/plain; version=0.0.4; charset=utf-8"
        families = list(parse_text(body))
        t = types(families)
        for c in COUNTERS:
            assert t[f"framering_producer_{c}"] == "counter", t
        assert t["framering_producer_slots_in_use"] == "gauge"
        frames = next(f for f in families if f.name == "framering_producer_frames")
        assert [s.name for s in frames.samples] == ["framering_producer_frames_total"]
        assert frames.samples[0].value >= 1
    finally:
        producer.send_signal(signal.SIGTERM)
        producer.communicate(timeout=30)
