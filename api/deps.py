"""What every router depends on: the service's settings, its one Firestore client, the fleet view.

The routers import this module, never api.app (which imports the routers): no import cycle.
"""

import dataclasses
from typing import Annotated

from fastapi import Depends, Request

from occupancy.fleet import DEFAULT_STALE_AFTER_S, Thresholds


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything the service is configured with (`python -m api --help`)."""

    project: str = "demo-occupancy"
    database: str = "(default)"
    realtime_collection: str = "realtime"
    history_collection: str = "history"
    devices_collection: str = "devices"
    trains_collection: str = "trains"
    # Occupancy reads without a token (apps, riders); device data and writes always need one.
    public_reads: bool = True
    stale_after_s: float = DEFAULT_STALE_AFTER_S
    thresholds: Thresholds = Thresholds()
    # Age at which the fleet view (GET /v1/trains, the feed, the dashboard) is refreshed in the
    # background, still served meanwhile; 0: read for every request.
    fleet_cache_s: float = 1.0
    # How often the fleet cache reads the whole fleet again, not only what changed (deleted
    # documents show then), seconds.
    fleet_full_read_s: float = 60.0
    # A fleet view older than this (no refresh succeeded) answers 503 instead of old numbers.
    fleet_max_age_s: float = 30.0
    # How long the feed's map of devices to doors is kept (without the listeners).
    doors_cache_s: float = 60.0
    # Bound on each Firestore call made for a request (client retries included), seconds.
    firestore_timeout_s: float = 10.0
    # Firebase Web API key a browser signs in with (public by design; empty on the emulator).
    firebase_api_key: str = ""
    # The operator's GTFS static feed (a zip): trains are attached to their scheduled trips.
    gtfs_static: str = ""
    # The operator's own GTFS-RT VehiclePositions feed, served with occupancy added (api/enricher.py).
    upstream_vehicle_positions: str = ""
    # What readers who are not signed-in operators see: "coarse" (occupancy/privacy.py) or "exact".
    public_precision: str = "coarse"
    privacy_step_pct: int = 10
    privacy_min_capacity: int = 20
    privacy_seed_file: str = ""
    privacy_window_s: int = 300
    # Firestore collection of the forecast job's documents (docs/forecast.md).
    forecast_collection: str = "forecasts"
    # How long a public read's answer (one train, its history) is served to every reader, seconds.
    public_cache_s: float = 30.0
    # Follow realtime and trains with Firestore listeners (billed per changed document) instead
    # of reading the fleet every --fleet_cache_s (occupancy/fleet_listener.py).
    fleet_listener: bool = False


def get_client(request: Request):
    """The process's one Firestore client (created at start-up, thread-safe)."""
    return request.app.state.client


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


# What a router declares it needs: `settings: SettingsDep`, `client: ClientDep`.
SettingsDep = Annotated[Settings, Depends(get_settings)]
ClientDep = Annotated[object, Depends(get_client)]


def read_fleet(request: Request):
    """(read at, every train's view), through the app's fleet cache: the one way every
    router reads the whole fleet."""
    import datetime

    listener = getattr(request.app.state, "fleet_listener", None)
    if listener is not None:
        from occupancy.fleet_listener import NotReady

        try:
            return listener.view()
        except NotReady:
            pass  # starting: read the fleet as without a listener

    def read():
        now = datetime.datetime.now(datetime.timezone.utc)
        return now, request.app.state.fleet_reader.read(now)

    return request.app.state.fleet_cache.get(read)


def trip_for(request: Request, view, at):
    """(occupancy.schedule.TripRun or None, "assignment" | "schedule" | None) of a train at `at`:
    the one way the routers and the feed attach a train to its trip."""
    from occupancy import schedule

    return schedule.trip_of(request.app.state.schedule, view.trains_doc, at)
