"""What the API keeps between requests: answers read from Firestore (`ReadCache`) and values
built from one fleet view (`PerView`), so that a crowd of readers costs one read or one build."""

import collections
import threading
import time
from concurrent.futures import Future
from typing import Callable, Dict, Hashable, Tuple, TypeVar

T = TypeVar("T")


class PerView:
    """A value built from a fleet view (and what else it is built from), one per key (e.g. exact
    or public numbers), built again only when the view changes; readers asking while it is
    built wait for that one build.

    `sources` are compared by identity (the view's list of trains, the doors' dict: a new read
    is a new object) and `at` by value. Holding the sources keeps their ids from being reused
    while the value stands for them."""

    def __init__(self):
        self._lock = threading.Lock()
        self._held: Dict[Hashable, Tuple[tuple, object, object]] = {}
        self._building: Dict[Hashable, Tuple[tuple, object, Future]] = {}

    @staticmethod
    def _for(held, sources: tuple, at) -> bool:
        """Whether `held` (sources, at, ...) was built from `sources` at `at`."""
        if held is None or held[1] != at or len(held[0]) != len(sources):
            return False
        return all(a is b for a, b in zip(held[0], sources))

    def get(self, key: Hashable, sources: tuple, at, build: Callable[[], T]) -> T:
        with self._lock:
            held = self._held.get(key)
            if self._for(held, sources, at):
                return held[2]
            building = self._building.get(key)
            owner = not self._for(building, sources, at)
            if owner:
                building = self._building[key] = (sources, at, Future())
        future = building[2]
        if not owner:
            return future.result()
        try:
            value = build()
        except BaseException as e:
            with self._lock:
                self._done(key, building)
            future.set_exception(e)
            raise
        with self._lock:
            self._held[key] = (sources, at, value)
            self._done(key, building)
        future.set_result(value)
        return value

    def _done(self, key: Hashable, building: tuple) -> None:
        """Forgets the build under way for `key`, if it is still `building` (held: the lock)."""
        if self._building.get(key) is building:
            del self._building[key]


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
