"""What an unsigned-in reader sees: coarse numbers (occupancy/privacy.py); an operator, exact.

Every public read of occupancy goes through `views_for`: /v1/trains, /v1/trains/{id}, its
history, the GTFS-RT feed and the enriched feed. `--public_precision exact` turns it off.
"""

import collections
import logging
import os
import secrets
import threading
import time
from concurrent.futures import Future
from typing import Callable, Hashable, List, Optional

from fastapi import Request

from api.auth import OPERATOR_CLAIM
from api.deps import read_fleet, trip_for
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
        out.append(state.privacy_holder.public(view, hold_at(request, view, at)))
    state.public_memo = (memo_key, views, out)  # holds `views`, so its id cannot be reused meanwhile
    return out


def hold_at(request: Request, view: fleet.TrainView, at) -> privacy.Hold:
    """The hold (departure or window) a train's public numbers stand for at `at`."""
    run, _ = trip_for(request, view, at)
    return privacy.hold_of(at, request.app.state.privacy_policy, run, run.departure_times() if run else ())


def public_train(request: Request, train_id: str):
    """(read at, the train's public view or None) from the fleet view every public read shares:
    no Firestore read of its own."""
    read_at, views = read_fleet(request)
    state = request.app.state
    memo = getattr(state, "public_by_id", None)
    if memo is None or memo[0] is not views or memo[1] != read_at:
        shown = views_for(request, views, read_at, None)
        memo = state.public_by_id = (views, read_at, {view.train_id: view for view in shown})
    return read_at, memo[2].get(train_id)


class ReadCache:
    """Answers to public reads, each served for `ttl_s` after it was read, at most `size` of
    them (the least recently used go first). Callers asking for a key being read wait for that
    one read: a crowd of viewers costs one read per key and interval, not one per viewer.
    `ttl_s` 0: every call reads."""

    def __init__(self, ttl_s: float, size: int = 256, clock: Callable[[], float] = time.monotonic):
        self.ttl_s, self.size, self._clock = ttl_s, size, clock
        self._lock = threading.Lock()
        self._answers: "collections.OrderedDict[Hashable, tuple]" = collections.OrderedDict()
        self._reading: dict = {}
        self.reads = 0  # reads made (for the tests)

    def get(self, key: Hashable, read: Callable[[], object]):
        if self.ttl_s <= 0:
            return read()
        with self._lock:
            held = self._answers.get(key)
            if held is not None and self._clock() - held[0] < self.ttl_s:
                self._answers.move_to_end(key)
                return held[1]
            future = self._reading.get(key)
            owner = future is None
            if owner:
                future = self._reading[key] = Future()
        if not owner:
            return future.result()
        started = self._clock()
        try:
            value = read()
        except BaseException as e:
            future.set_exception(e)
            raise
        finally:
            with self._lock:
                self._reading.pop(key, None)
                self.reads += 1
        with self._lock:
            self._answers[key] = (started, value)
            self._answers.move_to_end(key)
            while len(self._answers) > self.size:
                self._answers.popitem(last=False)
        future.set_result(value)
        return value
