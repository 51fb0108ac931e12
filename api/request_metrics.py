"""The API's Prometheus series, one registry per application (api/metrics.py serves them): the
requests by route, method and status and their latency, counted by `middleware`, and the fleet's
gauges, which GET /metrics sets from the fleet view at each scrape."""

import time

from fastapi import Request
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Seconds: the fleet cache answers in milliseconds, a Firestore read in tens, a cold one in more.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class RequestMetrics:
    """One application's request counters (a registry of its own: apps in one process, as the
    tests make them, do not share counts)."""

    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "occupancy_api_requests",
            "Requests answered, by route template, method and status code.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "occupancy_api_request_seconds",
            "Time from the request to its answer, by route template.",
            ["route"],
            registry=self.registry,
            buckets=BUCKETS,
        )

        self.trains = Gauge(
            "occupancy_trains", "Trains by status (ok, stale, no_data).", ["status"], registry=self.registry
        )
        self.silent = Gauge(
            "occupancy_devices_silent",
            "Devices silent for --stale_after_s on trains whose other devices report.",
            registry=self.registry,
        )
        self.fleet_readable = Gauge(
            "occupancy_fleet_readable", "1 if the fleet could be read for this scrape.", registry=self.registry
        )

    def observe(self, request: Request, status: int, seconds: float) -> None:
        route = getattr(request.scope.get("route"), "path", None) or "unmatched"
        method = request.method if request.method in METHODS else "other"  # any word is a method
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def middleware(self):
        """The HTTP middleware that counts every request, those that raised as 500."""

        async def count(request: Request, call_next):
            started, status = time.perf_counter(), 500
            try:
                response = await call_next(request)
                status = response.status_code
                return response
            finally:
                self.observe(request, status, time.perf_counter() - started)

        return count
