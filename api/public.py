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
from api.deps import trip_for
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
    settings = request.app.state.settings
    return settings.public_precision == privacy.EXACT or bool(claims and claims.get(OPERATOR_CLAIM) is True)


def views_for(request: Request, views: List[fleet.TrainView], at, claims: Optional[dict]) -> List[fleet.TrainView]:
    """`views` as this caller may see them."""
    if exact_for(request, claims):
        return views
    state = request.app.state
    # Once per fleet view, not per request: the same view at the same time gives the same answer.
    memo_key = (id(views), at)
    memo = getattr(state, "public_memo", None)
    if memo is not None and memo[0] == memo_key and memo[1] is views:
        return memo[2]
    out = []
    for view in views:
        run, _ = trip_for(request, view, at)
        key = privacy.departure_key(at, state.privacy_policy, run, run.departure_times() if run else ())
        out.append(state.privacy_holder.public(view, key))
    state.public_memo = (memo_key, views, out)  # holds `views`, so its id cannot be reused meanwhile
    return out
