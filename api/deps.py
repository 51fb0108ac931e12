"""What every router depends on: the service's settings, its one Firestore client, the fleet view,
each reached through the application's `Services` (api/services.py).

The routers import this module, never api.app (which imports the routers): no import cycle.
"""

from typing import Annotated, Dict, Iterable

from fastapi import Depends, Request

from adapters.fleet_listener import NotReady
from api.services import services_of
from api.settings import Settings


def get_client(request: Request):
    """The process's one Firestore client (created at start-up, thread-safe)."""
    return services_of(request).client


def get_settings(request: Request) -> Settings:
    return services_of(request).settings


# What a router declares it needs: `settings: SettingsDep`, `client: ClientDep`.
SettingsDep = Annotated[Settings, Depends(get_settings)]
ClientDep = Annotated[object, Depends(get_client)]


def read_fleet(request: Request):
    """(read at, every train's view), through the app's fleet cache: the one way every
    router reads the whole fleet."""
    import datetime

    services = services_of(request)
    listener = services.fleet_listener
    if listener is not None:
        try:
            return listener.view()
        except NotReady:
            pass  # starting: read the fleet as without a listener

    def read():
        now = datetime.datetime.now(datetime.timezone.utc)
        return now, services.fleet_reader.read(now)

    return services.fleet_cache.get(read)


def trip_for(request: Request, view, at):
    """(occupancy.schedule.TripRun or None, "assignment" | "schedule" | None) of a train at `at`:
    the one way the routers and the feed attach a train to its trip."""
    from occupancy import schedule

    return schedule.trip_of(services_of(request).schedule, view.trains_doc, at)


def read_forecasts(request: Request, ids: Iterable[str]) -> Dict[str, dict]:
    """Document id -> the forecast job's document (--forecast_collection) of each of `ids` that
    exists: one batched read, the one way the routers read forecasts by the batch."""
    from adapters.store import count_ops

    services = services_of(request)
    settings, client = services.settings, services.client
    refs = [client.collection(settings.forecast_collection).document(i) for i in sorted(set(ids))]
    if not refs:
        return {}
    found = {}
    for snapshot in client.get_all(refs, timeout=settings.firestore_timeout_s):
        if snapshot.exists:
            found[snapshot.id] = snapshot.to_dict()
    count_ops(reads=len(refs))
    return found
