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

from fastapi import APIRouter, Request, Response
from google.api_core import exceptions as gexc
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from adapters.fleet_cache import FleetStale
from api.deps import read_fleet
from api.gtfs_rt import read_doors
from api.request_metrics import RequestMetrics
from api.services import services_of
from occupancy import fleet

_LOGGER = logging.getLogger(__name__)
router = APIRouter(include_in_schema=False)


def set_fleet_gauges(exported: RequestMetrics, request: Request, stale_after_s: float) -> None:
    """Sets the fleet's gauges from its view now (through the fleet cache)."""
    try:
        read_at, views = read_fleet(request)
    except Exception as e:  # noqa: BLE001 - no failure to read the fleet may hide the request counts
        if not isinstance(e, (gexc.GoogleAPIError, FleetStale)):
            _LOGGER.exception("Reading the fleet for /metrics failed")
        exported.fleet_readable.set(0)  # and no numbers of an older read left standing
        exported.trains.clear()
        exported.silent.set(0)
        return
    exported.fleet_readable.set(1)
    for status in ("ok", "stale", "no_data"):
        exported.trains.labels(status).set(sum(view.status == status for view in views))
    try:
        doors = read_doors(request)
    except Exception as e:  # noqa: BLE001 - as for the fleet above
        if not isinstance(e, (gexc.GoogleAPIError, FleetStale)):
            _LOGGER.exception("Reading the doors for /metrics failed")
        exported.fleet_readable.set(0)
        exported.silent.set(0)
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
    exported.silent.set(silent)


@router.get("/metrics")
def metrics(request: Request) -> Response:
    services = services_of(request)
    set_fleet_gauges(services.metrics, request, services.settings.stale_after_s)
    return Response(generate_latest(services.metrics.registry), media_type=CONTENT_TYPE_LATEST)
