"""The bridge's counters, and the health endpoint that serves them.

GET /healthz  200 {"status": "ok", ...counters} while connected to the broker and
              forwarding; 503 {"status": "degraded", ...} otherwise (Pub/Sub failing,
              broker away, or a message received more than `stall_after_s` ago and
              not yet forwarded: progress, not only a connection), so that a load
              balancer or systemd watchdog can act.
GET /metrics  the same counters in the Prometheus text format (prometheus-client), for a
              scraper: occupancy_bridge_<counter>_total, and the gauges in flight, oldest
              unacknowledged (seconds), connected and healthy (1 or 0).
"""

import http.server
import json
import threading
import time
import urllib.error
import urllib.request
from typing import Optional, Tuple


class Counters:
    """What the bridge has done, for the health endpoint and the status log line."""

    FIELDS = (
        "received",
        "forwarded",
        "publish_errors",
        "reconnects",
        "deferred",
        "refused_by_pubsub",
        "unforwardable",
        "attribute_errors",
    )

    def __init__(self, stall_after_s: float = 60.0):
        self._lock = threading.Lock()
        for name in self.FIELDS:
            setattr(self, name, 0)
        self.stall_after_s = stall_after_s
        # Monotonic time the oldest message received and not yet acknowledged came (None: none).
        self.oldest_pending: Optional[float] = None
        self.in_flight = 0
        self.max_in_flight_seen = 0
        self.connected = False
        self.failing_since: Optional[float] = None
        self.last_error = ""

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + n)

    def set_in_flight(self, n: int) -> None:
        with self._lock:
            self.in_flight = n
            self.max_in_flight_seen = max(self.max_in_flight_seen, n)

    def failing(self, reason: str) -> None:
        with self._lock:
            self.last_error = f"{time.strftime('%H:%M:%S')} {reason}"[:300]
            if self.failing_since is None:
                self.failing_since = time.monotonic()

    def recovered(self) -> None:
        with self._lock:
            self.failing_since = None

    def snapshot(self) -> dict:
        with self._lock:
            now = time.monotonic()
            oldest = self.oldest_pending
            waiting_s = round(now - oldest, 1) if oldest is not None else 0.0
            healthy = self.connected and self.failing_since is None and waiting_s <= self.stall_after_s
            return {
                "status": "ok" if healthy else "degraded",
                "connected": self.connected,
                "oldest_unacknowledged_s": waiting_s,
                **{name: getattr(self, name) for name in self.FIELDS},
                "in_flight": self.in_flight,
                "max_in_flight_seen": self.max_in_flight_seen,
                "failing_for_s": (
                    round(time.monotonic() - self.failing_since, 1) if self.failing_since is not None else 0.0
                ),
                "last_error": self.last_error,
            }


COUNTERS = {
    "received": "Messages received from the broker.",
    "forwarded": "Messages Pub/Sub acknowledged (then acknowledged at the broker).",
    "publish_errors": "Publishes to Pub/Sub that failed for now (the bridge reconnects; the broker redelivers).",
    "reconnects": "Connections to the broker made again.",
    "deferred": "Messages past the held queue, left unacknowledged for the broker to send again.",
    "refused_by_pubsub": "Messages Pub/Sub refused for good, forwarded again cut (a dead letter downstream).",
    "unforwardable": "Messages Pub/Sub refused in every form: acknowledged, not forwarded (logged).",
    "attribute_errors": "Messages whose attributes could not be read: forwarded unchanged.",
}
GAUGES = {
    "in_flight": "Messages handed to Pub/Sub and not yet acknowledged by it.",
    "oldest_unacknowledged_seconds": "Age of the oldest message received and not yet forwarded (0: none).",
    "connected": "1 while subscribed at the broker.",
    "healthy": "1 while /healthz says ok (connected, Pub/Sub taking messages, nothing stuck).",
}


class _Snapshot:
    """A prometheus-client collector of one snapshot of the counters."""

    def __init__(self, snapshot: dict):
        self.snapshot = snapshot

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        s = self.snapshot
        for name in Counters.FIELDS:
            yield CounterMetricFamily(f"occupancy_bridge_{name}", COUNTERS[name], value=s[name])
        values = {
            "in_flight": s["in_flight"],
            "oldest_unacknowledged_seconds": s["oldest_unacknowledged_s"],
            "connected": int(s["connected"]),
            "healthy": int(s["status"] == "ok"),
        }
        for name, text in GAUGES.items():
            yield GaugeMetricFamily(f"occupancy_bridge_{name}", text, value=values[name])


def metrics_text(counters: Counters) -> bytes:
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry()
    registry.register(_Snapshot(counters.snapshot()))
    return generate_latest(registry)


def serve(counters: Counters, port: int, host: str = "127.0.0.1") -> http.server.ThreadingHTTPServer:
    """Starts the health endpoint in a daemon thread; returns the server (its port: .server_port)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the name http.server calls
            path = self.path.split("?")[0]
            if path == "/metrics":
                self._answer(200, "text/plain; version=0.0.4; charset=utf-8", metrics_text(counters))
            elif path in ("/healthz", "/"):
                body = counters.snapshot()
                self._answer(200 if body["status"] == "ok" else 503, "application/json", json.dumps(body).encode())
            else:
                self.send_error(404)

        def _answer(self, status: int, content_type: str, data: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):  # health probes are not news
            pass

    server = http.server.ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="bridge-health", daemon=True).start()
    return server


def probe(port: int, timeout_s: float = 2.0, host: str = "127.0.0.1") -> Tuple[Optional[int], dict]:
    """(HTTP status, counters) of a running bridge's GET /healthz; (None, {}) if it does not
    answer (what make run's footer, the bridge_kills scenario and bench.bridge read)."""
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/healthz", timeout=timeout_s) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:  # 503: degraded, with its counters
        try:
            return e.code, json.loads(e.read() or b"{}")
        except ValueError:
            return None, {}
    except (OSError, ValueError):
        return None, {}
