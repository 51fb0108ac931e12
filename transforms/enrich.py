"""EnrichWithTrain: Events -> (train_id, Event) through a cached, refreshed registry view.

How the view stays fresh (docs/design.md, "Device registry"): each worker
process reads the whole registry once, when its first LookupTrain instance
starts, keeps it for all its instances (transforms/worker_cache.py) and
refreshes it in place every `registry_refresh_s` with one query for what
changed since. A device leaves the fleet by being disabled (a change the query
sees), never by being deleted, so the view is never read whole again.

Not a side input: on Dataflow without an SDK state cache (the default) a side
input is fetched again for every bundle, and a streaming bundle holds tens of
elements, so a 100,000-device registry would cross the Fn API per bundle. Not
a slowly-updating side input either: the local BundleBasedDirectRunner runs
neither PeriodicImpulse nor a side input fed by an unbounded source.
"""

import logging
import threading
import time
import uuid
from typing import Tuple

import apache_beam as beam

from adapters import registry
from adapters.store import PERMANENT, TRANSIENT, RetryPolicy, make_client
from occupancy import authenticate, dead_letters, registry_entries, wire
from transforms import (
    coders,  # noqa: F401  (registers the Event coder)
    guard,
    worker_cache,
)

_LOGGER = logging.getLogger(__name__)
DEAD_LETTER = "dead_letter"
# Devices remembered as re-read lately, at most (each refresh forgets them all).
MAX_RECHECKED = 100_000


class _RegistryView:
    """A worker's view of the registry, shared by its LookupTrain instances."""

    def __init__(self, snapshot: registry_entries.RegistrySnapshot):
        self.snapshot = snapshot
        self.loaded_at = time.monotonic()
        self.refreshes = 0
        self.rechecked = {}  # device_id -> monotonic time of its last re-read
        self.lock = threading.Lock()
        self.authenticator = authenticate.Authenticator()
        self.reread_budget = RereadBudget()


class RereadBudget:
    """Re-reads of devices the view does not know, at most REREADS_PER_S a second per worker
    (a burst of REREAD_BURST): each id a forger invents would otherwise cost a Firestore read.
    A device registered a moment ago and not re-read for want of budget is in the view at the
    next refresh."""

    REREADS_PER_S = 20.0
    REREAD_BURST = 200.0

    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._tokens = self.REREAD_BURST
        self._at = clock()
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            now = self._clock()
            self._tokens = min(self.REREAD_BURST, self._tokens + (now - self._at) * self.REREADS_PER_S)
            self._at = now
            if self._tokens < 1:
                return False
            self._tokens -= 1
            return True


class LookupTrain(beam.DoFn):
    """Event -> (train_id, Event with train_id, capacity, registered_us); refused -> dead letter.

    In this order, each refusal a dead letter with its reason: a message not signed as it must
    be, as far as that is seen without the registry (`Authenticator.precheck`; a reset or
    terminus is always checked, whatever `device_auth` says); a device or train the registry
    does not know or has disabled; the signature, with the registry's keys; a count made
    before its device was moved to its train or registered again (`before_assignment`).
    """

    def __init__(
        self,
        project: str,
        database: str,
        devices_collection: str,
        trains_collection: str,
        refresh_s: float,
        device_auth: str = authenticate.REQUIRE,
    ):
        if device_auth not in authenticate.MODES:
            raise ValueError(f"device_auth must be one of {', '.join(authenticate.MODES)}, got {device_auth!r}")
        self._device_auth = device_auth
        self._project = project
        self._database = database
        self._devices = devices_collection
        self._trains = trains_collection
        self._refresh_s = refresh_s
        # One view per job, shared by every instance of this DoFn in a worker process.
        self._view_key = f"registry-{uuid.uuid4()}"
        self._unknown = beam.metrics.Metrics.counter("occupancy", "rejected_unknown_device")
        self._refreshed = beam.metrics.Metrics.counter("occupancy", "registry_refreshes")
        self._refresh_failed = beam.metrics.Metrics.counter("occupancy", "registry_refresh_failures")
        self._rereads = beam.metrics.Metrics.counter("occupancy", "registry_device_rereads")
        self._rereads_skipped = beam.metrics.Metrics.counter("occupancy", "registry_device_rereads_skipped")
        self._loads = beam.metrics.Metrics.counter("occupancy", "registry_loads")
        self._refused = {
            reason: beam.metrics.Metrics.counter("occupancy", f"rejected_{reason}")
            for reason in (
                wire.UNSIGNED,
                wire.BAD_SIGNATURE,
                wire.UNKNOWN_KEY,
                wire.EXPIRED_KEY,
                wire.BEFORE_ASSIGNMENT,
            )
        }
        self._logged = beam.metrics.Metrics.counter("occupancy", "auth_failures_accepted")
        self._unexpected = guard.counter()

    def setup(self):
        self._client = make_client(self._project, self._database)
        self._view = None

    def _load(self) -> _RegistryView:
        """The whole registry, read once per worker process."""
        snapshot = RetryPolicy().call(lambda: registry.load_snapshot(self._client, self._devices, self._trains))
        self._loads.inc()
        _LOGGER.info("Loaded registry: %s devices, %s trains", len(snapshot.devices), len(snapshot.trains))
        return _RegistryView(snapshot)

    def process(self, event: wire.Event):
        try:
            yield from self._lookup(event)
        except TRANSIENT:
            raise  # Firestore unreachable past its retries: the runner retries the bundle
        except Exception as e:  # noqa: BLE001 - no element may fail the bundle (transforms/guard.py)
            self._unexpected.inc()
            yield guard.dead_letter("EnrichWithTrain", e, event.raw, dict(event.attributes), event.message_id or None)

    def _lookup(self, event: wire.Event):
        if self._view is None:  # here, not in setup(): metrics count only within a bundle
            self._view = worker_cache.get(self._view_key, self._load)
        view = self._view
        now = time.monotonic()
        if now - view.loaded_at >= self._refresh_s:
            self._refresh(view, now)
        if self._mode(event) != authenticate.OFF:
            refused = view.authenticator.precheck(event)
            if refused is not None and self._mode(event) == authenticate.REQUIRE:
                yield self._refuse(event, *refused)
                return
        snapshot = view.snapshot
        if event.kind in wire.ZEROING:
            if event.train_id not in snapshot.trains:
                # Only a registered train can be reset: a forged or mistyped train id must
                # not create a train (or zero one) out of nothing.
                self._unknown.inc()
                yield _dead_letter(
                    event, wire.UNKNOWN_DEVICE, f"{event.kind} for train {event.train_id}, which is not registered"
                )
                return
            refused = self._authenticate(view, event, None, now)
            if refused is not None:
                yield refused
                return
            yield event.train_id, event.without_message()._replace(capacity=snapshot.capacity(event.train_id))
            return
        entry = snapshot.devices.get(event.device_id)
        skipped = False
        if entry is None or not entry.enabled:
            fresh, skipped = self._reread(view, event.device_id, now)
            entry = fresh or entry
        if entry is None or not entry.enabled or entry.role != registry_entries.DOOR:
            self._unknown.inc()
            state = "not registered" if entry is None else "disabled" if not entry.enabled else "not a door device"
            if skipped:
                state += " (not read again: too many unknown devices a second)"
            yield _dead_letter(event, wire.UNKNOWN_DEVICE, f"device {event.device_id} is {state}")
            return
        refused = self._authenticate(view, event, entry, now)
        if refused is not None:
            yield refused
            return
        if event.event_time_us < entry.assigned_us:
            yield self._refuse(
                event,
                wire.BEFORE_ASSIGNMENT,
                f"count of {wire.format_time(event.event_time_us)}, before {event.device_id} was moved to train "
                f"{entry.train_id} or registered again at {wire.format_time(entry.assigned_us)}",
            )
            return
        yield (
            entry.train_id,
            event.without_message()._replace(
                train_id=entry.train_id,
                capacity=snapshot.capacity(entry.train_id),
                # Since when it counts on this train: a device moved away and back again has
                # sent seqs elsewhere meanwhile, which the train must not take for a jump.
                registered_us=max(entry.registered_us, entry.assigned_us),
            ),
        )

    def _mode(self, event: wire.Event) -> str:
        """How `event` is checked: a reset or terminus zeroes a whole train, so it is always
        signed by a control key, whatever --device_auth says (a migration's `log` included)."""
        return authenticate.REQUIRE if event.kind in wire.ZEROING else self._device_auth

    def _refuse(self, event: wire.Event, reason: str, detail: str, now_us: int = None):
        self._refused[reason].inc()
        _LOGGER.info("Refused message %s: %s: %s", event.message_id, reason, detail)
        return _dead_letter(event, reason, detail, now_us)

    def _authenticate(self, view: _RegistryView, event: wire.Event, entry, now: float):
        """None if the message may go on (signed as it must be, or --device_auth says so), else
        its dead letter. A key the view does not know is looked for again (at most once per
        device per refresh interval), so a key added moments ago works."""
        mode = self._mode(event)
        if mode == authenticate.OFF:
            return None

        def principal_entry(principal):
            found = view.snapshot.devices.get(principal)
            if found is not None and found.role == registry_entries.CONTROL and found.enabled:
                return found
            return self._reread(view, principal, now)[0] or found

        now_us = wire.now_us()
        refused = view.authenticator.check(event, entry, now_us, principal_entry)
        if refused is not None and refused[0] == wire.UNKNOWN_KEY and entry is not None:
            fresh = self._reread(view, event.device_id, now)[0]
            if fresh is not None and fresh.enabled:
                refused = view.authenticator.check(event, fresh, now_us, principal_entry)
        if refused is None:
            return None
        reason, detail = refused
        if mode == authenticate.LOG:
            self._refused[reason].inc()
            self._logged.inc()
            _LOGGER.warning("Accepted (--device_auth=log) a message that would be refused: %s: %s", reason, detail)
            return None
        return self._refuse(event, reason, detail, now_us)

    def _refresh(self, view: _RegistryView, now: float) -> None:
        if not view.lock.acquire(blocking=False):
            return  # another thread is refreshing; use the current view meanwhile
        try:
            if now - view.loaded_at < self._refresh_s:
                return
            try:
                view.snapshot = registry.load_changes(self._client, view.snapshot, self._devices, self._trains)
            except Exception as e:  # noqa: BLE001 - any failure: the cached view, tried again next interval
                # A stale view is better than a stopped pipeline, and than every message failing
                # with the refresh (a permission, a document edited by hand).
                self._refresh_failed.inc()
                _LOGGER.warning("Registry refresh failed, keeping the cached view: %s", e)
            else:
                view.refreshes += 1
                view.rechecked.clear()
                self._refreshed.inc()
            view.loaded_at = now
        finally:
            view.lock.release()

    def _reread(self, view: _RegistryView, device_id: str, now: float):
        """(entry or None, skipped): an unknown device read again, at most once per device per
        refresh interval and within the worker's RereadBudget (`skipped`: not read for it)."""
        last = view.rechecked.get(device_id)
        if last is not None and now - last < self._refresh_s:
            return None, False
        if not view.reread_budget.take():
            self._rereads_skipped.inc()
            return None, True
        if len(view.rechecked) >= MAX_RECHECKED:
            view.rechecked.clear()  # bounded whatever ids arrive; a refresh clears it anyway
        view.rechecked[device_id] = now
        self._rereads.inc()
        try:
            entry = RetryPolicy().call(lambda: registry.read_device(self._client, self._devices, device_id))
        except PERMANENT as e:  # e.g. no permission: said, and the device stays unknown
            _LOGGER.warning("Reading device %s from the registry failed: %s", wire.shown(device_id), e)
            return None, False
        if entry is not None:
            view.snapshot.devices[device_id] = entry
        return entry, False


def _dead_letter(event: wire.Event, reason: str, detail: str, now_us: int = None):
    """The `dead_letter` output of a message refused here, with its payload as sent."""
    record = dead_letters.record(
        reason,
        detail,
        event.raw,
        dict(event.attributes),
        event.message_id or None,
        wire.now_us() if now_us is None else now_us,
        "EnrichWithTrain",
    )
    return beam.pvalue.TaggedOutput(DEAD_LETTER, record)


class EnrichWithTrain(beam.PTransform):
    """PCollection[Event] -> tagged outputs `keyed` ((train_id, Event)) and `dead_letter` (dict)."""

    def __init__(
        self,
        project: str,
        database: str = "(default)",
        devices_collection: str = "devices",
        trains_collection: str = "trains",
        refresh_s: float = 60.0,
        device_auth: str = authenticate.REQUIRE,
    ):
        super().__init__()
        self._args = (project, database, devices_collection, trains_collection)
        self._refresh_s = refresh_s
        self._device_auth = device_auth

    def expand(self, events):
        return events | "LookupTrain" >> beam.ParDo(
            LookupTrain(*self._args, self._refresh_s, self._device_auth)
        ).with_output_types(Tuple[str, wire.Event]).with_outputs(DEAD_LETTER, main="keyed")
