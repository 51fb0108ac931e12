"""GET /metrics: the API's requests by route, method and status, and how long each took, in the
Prometheus text format (prometheus-client), for a self-hosted scraper. On Cloud Run the platform
counts requests by status and latency itself (docs/operations.md, "Signals").

And what only the fleet's view shows, read through the fleet cache at each scrape: the trains by
status (ok, stale: no message for --stale_after_s, no_data), and the devices silent that long on
a train whose other doors still report (a door counter gone quiet, not a train parked).

The route is the matched path template (`/v1/trains/{train_id}`), never the path asked for: one
series per route, whatever ids callers send; a path no route matches is `unmatched`, a method
outside HTTP's usual ones `other`.
"""

import datetime
import logging
import time

from fastapi import APIRouter, Request, Response
from google.api_core import exceptions as gexc
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from adapters.fleet_cache import FleetStale
from api.deps import read_fleet
from api.gtfs_rt import read_doors
from occupancy import fleet

_LOGGER = logging.getLogger(__name__)
router = APIRouter(include_in_schema=False)
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

    def read_fleet(self, request: Request, stale_after_s: float) -> None:
        """Sets the fleet's gauges from its view now (through the fleet cache)."""
        try:
            read_at, views = read_fleet(request)
        except Exception as e:  # noqa: BLE001 - no failure to read the fleet may hide the request counts
            if not isinstance(e, (gexc.GoogleAPIError, FleetStale)):
                _LOGGER.exception("Reading the fleet for /metrics failed")
            self.fleet_readable.set(0)  # and no numbers of an older read left standing
            self.trains.clear()
            self.silent.set(0)
            return
        self.fleet_readable.set(1)
        for status in ("ok", "stale", "no_data"):
            self.trains.labels(status).set(sum(view.status == status for view in views))
        try:
            doors = read_doors(request)
        except Exception as e:  # noqa: BLE001 - as for the fleet above
            if not isinstance(e, (gexc.GoogleAPIError, FleetStale)):
                _LOGGER.exception("Reading the doors for /metrics failed")
            self.fleet_readable.set(0)
            self.silent.set(0)
            return
        limit = read_at - datetime.timedelta(seconds=stale_after_s)
        silent = 0
        for view in views:
            if view.status == "ok":
                # Only the train's doors now: a device moved away or disabled stays in what the
                # fold remembers of the train, and is not this train's door gone quiet.
                on_train = doors.get(view.train_id, {})
                seen = [fleet.as_utc((e or {}).get("last_seen")) for d, e in view.devices_seen.items() if d in on_train]
                silent += sum(1 for at in seen if at is not None and at < limit)
        self.silent.set(silent)

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


@router.get("/metrics")
def metrics(request: Request) -> Response:
    exported = request.app.state.metrics
    exported.read_fleet(request, request.app.state.settings.stale_after_s)
    return Response(generate_latest(exported.registry), media_type=CONTENT_TYPE_LATEST)
