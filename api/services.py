"""What the API's routers share, typed: one `Services` per application, built by api.app.create_app
and reached through `services_of(request)` (or `ServicesDep` in a route's signature)."""

import dataclasses
from typing import Annotated, Any, Dict, List, Optional, Tuple

from fastapi import Depends, Request

from adapters.fleet_cache import FleetCache
from adapters.fleet_listener import FleetListener
from adapters.fleet_views import FleetReader
from api.caches import PerView, ReadCache
from api.request_metrics import RequestMetrics
from api.settings import Settings
from occupancy import privacy, schedule

OPERATOR_RECHECK_S = 30.0  # how long an operator token's reads go on without asking Firebase Auth


@dataclasses.dataclass(eq=False)
class Services:
    """The application's settings, clients, caches and the values built once per fleet view."""

    settings: Settings
    client: Any  # the process's one google.cloud.firestore.Client (thread-safe)
    fleet_reader: FleetReader  # what the fleet cache reads: after the first read, what changed
    fleet_cache: FleetCache  # (read at, every train's view), shared by every reader of the fleet
    doors_cache: FleetCache  # train -> {device: door}: the registry, read far less often
    upstream_cache: FleetCache  # the operator's own feed, for the enriched feed
    schedule: Optional[schedule.Schedule]  # the static schedule (--gtfs_static), or None
    privacy_policy: privacy.Policy
    privacy_holder: privacy.Holder  # each train's public numbers, held per departure
    public_reads: ReadCache  # public history pages
    forecast_documents: ReadCache  # a trip's forecast document per day
    forecast_boards: ReadCache  # the forecast documents of a stop's next departures
    metrics: RequestMetrics
    # Built once per fleet view: the /v1/trains body, the two feeds (keyed by exact or public),
    # the trains on a trip with a forecast and the TripUpdates and SIRI-ET documents built from
    # them, and the public views (as a list and by train id).
    trains_bodies: PerView = dataclasses.field(default_factory=PerView)
    feeds: PerView = dataclasses.field(default_factory=PerView)
    trips_ahead: PerView = dataclasses.field(default_factory=PerView)
    public_views: PerView = dataclasses.field(default_factory=PerView)
    # An operator token's reads: the user as Firebase Auth has it now, asked at most once per
    # ttl per token (api/auth.allow_read).
    operator_checks: ReadCache = dataclasses.field(default_factory=lambda: ReadCache(OPERATOR_RECHECK_S))
    fleet_listener: Optional[FleetListener] = None  # with --fleet_listener, once started
    # stop_id -> the (trip, stop time) pairs calling there, made at the first departures board.
    stop_index: Optional[Dict[str, List[Tuple[schedule.Trip, schedule.StopTime]]]] = None


def services_of(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(services_of)]
