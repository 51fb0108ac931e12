"""GET /metrics: the API's requests by route, method and status, and how long each took, in the
Prometheus text format (prometheus-client), for a self-hosted scraper. On Cloud Run the platform
counts requests by status and latency itself (docs/operations.md, "Signals").

The route is the matched path template (`/v1/trains/{train_id}`), never the path asked for: one
series per route, whatever ids callers send; a path no route matches is `unmatched`.
"""

import time

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

router = APIRouter(include_in_schema=False)
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

    def observe(self, request: Request, status: int, seconds: float) -> None:
        route = getattr(request.scope.get("route"), "path", None) or "unmatched"
        self.requests.labels(route, request.method, str(status)).inc()
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


@router.get("/metrics")
def metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
