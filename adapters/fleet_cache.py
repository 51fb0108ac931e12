"""The fleet view the API serves between reads: stale-while-revalidate, with a bound on how old a
view may be served (docs/api.md, "Serving cost")."""

import logging
import threading
import time
from typing import Optional

from google.api_core import exceptions as gexc

_LOGGER = logging.getLogger(__name__)


class FleetStale(Exception):
    """The fleet view could not be refreshed for longer than the cache's `max_age_s`."""

    def __init__(self, age_s: float):
        super().__init__(f"the fleet view could not be refreshed for {age_s:.0f} s")
        self.age_s = age_s


class FleetCache:
    """The last fleet read's result, served while a newer one is read in the background.

    Every reader of the fleet (apps polling the API, the dashboard, the feed)
    would otherwise cost two queries and one read per train each; the pipeline
    writes a train's realtime document at most once per flush interval, so a
    view about that old serves the same numbers for a fraction of the reads.

    Stale-while-revalidate: a view older than `ttl_s` is refreshed by one
    background read at a time while callers go on getting the last view, so a
    request never waits for a whole-fleet read (only the very first, when there
    is no view yet, and callers arriving meanwhile share it). A view's age
    counts from when its read began. The earlier cache stamped that time and
    reused the view for `ttl_s` from it, synchronously: once a read took longer
    than the TTL (1,000 trains: ~670 ms on the emulator, 1 s TTL, plus any load)
    every request read the whole fleet again. When no read has succeeded for
    `max_age_s` beyond the time a read takes (Firestore unreachable),
    FleetStale rather than old numbers served as new: counted from when the
    last read finished, plus its duration, so that a fleet whose read alone
    takes longer than `max_age_s` (10,000 trains: over 30 s on the emulator
    under load) is still served. `ttl_s` 0: every call reads (tests, benchmarks).
    """

    def __init__(self, ttl_s: float, max_age_s: Optional[float] = None, clock=None):
        self.ttl_s, self.max_age_s = ttl_s, max_age_s
        self._clock = clock or time.monotonic
        self._lock = threading.Lock()
        self._value = None
        self._read_at = 0.0  # when the view's read began (its age, for the TTL)
        self._fresh_at = 0.0  # when the last successful read finished (for max_age_s)
        self._read_s = 0.0  # how long it took
        self._refreshing = False
        self.refreshes = 0  # background reads started (for tests and the benchmark)

    def get(self, read):
        """The last view `read()` returned (e.g. (read at, views)); raises FleetStale."""
        if self.ttl_s <= 0:
            return read()
        with self._lock:
            if self._value is None:  # nothing to serve yet: this caller reads, others wait for it
                started = self._clock()
                self._value, self._read_at = read(), started
                self._fresh_at = self._clock()
                self._read_s = self._fresh_at - started
            age = self._clock() - self._read_at
            if age >= self.ttl_s and not self._refreshing:
                self._refreshing = True
                self.refreshes += 1
                threading.Thread(target=self._refresh, args=(read,), name="fleet-refresh", daemon=True).start()
            if self.max_age_s is not None and self._clock() - self._fresh_at > self.max_age_s + self._read_s:
                raise FleetStale(age)
            return self._value

    def _refresh(self, read) -> None:
        started = self._clock()
        try:
            value = read()
        except (gexc.GoogleAPIError, OSError) as e:  # kept serving the last view until max_age_s
            _LOGGER.warning("Fleet refresh failed, serving the last view: %s", e)
            value = None
        with self._lock:
            if value is not None:
                self._value, self._read_at, self._fresh_at = value, started, self._clock()
                self._read_s = self._fresh_at - started
            self._refreshing = False
