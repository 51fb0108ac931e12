"""What an unsigned-in reader sees: coarse numbers (occupancy/privacy.py); an operator, exact.

Every public read of occupancy goes through `views_for`: /v1/trains, /v1/trains/{id}, its
history, the GTFS-RT feed and the enriched feed. `--public_precision exact` turns it off.
"""

import logging
import os
import secrets
from typing import List, Optional

from fastapi import Request

from api.auth import OPERATOR_CLAIM
from api.deps import read_fleet, trip_for
from api.services import services_of
from occupancy import fleet, privacy

_LOGGER = logging.getLogger(__name__)
SEED_ENV = "OCCUPANCY_PRIVACY_SEED"


def load_seed(path: str) -> bytes:
    """The secret seed of the public draws: a file, else $OCCUPANCY_PRIVACY_SEED, else one made
    for this process (then several instances of the API draw differently: set one in production)."""
    if path:
        with open(path, "rb") as f:
            seed = f.read().strip()
        if len(seed) < 16:
            raise SystemExit(f"error: --privacy_seed_file {path} holds fewer than 16 bytes")
        return seed
    if os.environ.get(SEED_ENV):
        return os.environ[SEED_ENV].encode("utf-8")
    _LOGGER.warning("No --privacy_seed_file or $%s: the public draws use a seed made for this process", SEED_ENV)
    return secrets.token_bytes(32)


def exact_for(request: Request, claims: Optional[dict]) -> bool:
    settings = services_of(request).settings
    return settings.public_precision == privacy.EXACT or bool(claims and claims.get(OPERATOR_CLAIM) is True)


def views_for(request: Request, views: List[fleet.TrainView], at, claims: Optional[dict]) -> List[fleet.TrainView]:
    """`views` as this caller may see them."""
    if exact_for(request, claims):
        return views
    services = services_of(request)
    # Once per fleet view, not per request: the same view at the same time gives the same answer.
    return services.public_views.get(
        "list", (views,), at, lambda: [services.privacy_holder.public(v, hold_at(request, v, at)) for v in views]
    )


def hold_at(request: Request, view: fleet.TrainView, at) -> privacy.Hold:
    """The hold (departure or window) a train's public numbers stand for at `at`."""
    run, _ = trip_for(request, view, at)
    return privacy.hold_of(at, services_of(request).privacy_policy, run, run.departure_times() if run else ())


def public_train(request: Request, train_id: str):
    """(read at, the train's public view or None) from the fleet view every public read shares:
    no Firestore read of its own."""
    read_at, views = read_fleet(request)
    by_id = services_of(request).public_views.get(
        "by_id", (views,), read_at, lambda: {view.train_id: view for view in views_for(request, views, read_at, None)}
    )
    return read_at, by_id.get(train_id)
