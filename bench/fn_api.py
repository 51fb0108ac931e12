"""The job on `FnApiRunner` as Dataflow runs it: several bundle processors, state over the Fn API,
small bundles; and what its state costs, counted request by request.

* `runner_options(mode, workers)`: `in_memory` (state by direct calls, one
  bundle processor: what the first curve of bench-scale used) or
  `multi_threading` (state and data over gRPC, `workers` bundle processors at
  once, as a Dataflow worker runs them).
* `ReplayInBundles`: the messages handed out `per_bundle` at a time, each batch
  a bundle of its own (a splittable DoFn that defers the rest), with the
  watermark at the last message's publish time: a streaming job's bundles of
  tens of elements, and flush timers firing between them, instead of the batch
  runner's few huge bundles, which hide every per-bundle cost.
* `StateTraffic`: every user-state request the SDK harness sends to the
  runner (gets, appends, clears), by transform and by where it was made:
  in `process` (per element), in a timer callback (per flush), or when the
  bundle commits what was written (Beam's Python SDK buffers writes and sends
  them at the end of the bundle, one clear and one append per written cell
  and key).
"""

import collections
import contextlib
import functools
import pickle
import threading
from typing import Dict

import apache_beam as beam
from apache_beam.io.restriction_trackers import OffsetRange, OffsetRestrictionTracker
from apache_beam.io.watermark_estimators import ManualWatermarkEstimator
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.transforms.core import RestrictionProvider
from apache_beam.utils.timestamp import Timestamp

MODES = ("in_memory", "multi_threading")


def runner_options(mode: str, workers: int) -> PipelineOptions:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    return PipelineOptions(direct_running_mode=mode, direct_num_workers=workers if mode != "in_memory" else 1)


class _Offsets(RestrictionProvider):
    """The message indices of a pickle file, [0, count)."""

    def initial_restriction(self, path):
        with open(path, "rb") as f:
            return OffsetRange(0, len(pickle.load(f)))

    def create_tracker(self, restriction):
        return OffsetRestrictionTracker(restriction)

    def restriction_size(self, path, restriction):
        return restriction.size()

    def split(self, path, restriction):
        yield restriction  # one reader: the messages stay in publish order


class ReplayInBundles(beam.DoFn):
    """path -> the PubsubMessages pickled there, `per_bundle` a bundle, the watermark following
    their publish times (as a Pub/Sub read's does)."""

    def __init__(self, per_bundle: int):
        self._per_bundle = per_bundle
        self._messages = {}

    def process(
        self,
        path,
        tracker=beam.DoFn.RestrictionParam(_Offsets()),
        watermark=beam.DoFn.WatermarkEstimatorParam(ManualWatermarkEstimator.default_provider()),
    ):
        if path not in self._messages:
            with open(path, "rb") as f:
                self._messages[path] = pickle.load(f)
        messages = self._messages[path]
        restriction = tracker.current_restriction()
        i = restriction.start
        while i < min(restriction.stop, restriction.start + self._per_bundle) and tracker.try_claim(i):
            message = messages[i]
            yield beam.window.TimestampedValue(message, Timestamp.of(message.publish_time.timestamp()))
            i += 1
        if i > restriction.start:
            watermark.set_watermark(Timestamp.of(messages[i - 1].publish_time.timestamp()))
        if i < restriction.stop:
            tracker.defer_remainder()


class ReplayMessagesInBundles(beam.PTransform):
    """PBegin -> PCollection[PubsubMessage] (each needs `publish_time`), in bundles of `per_bundle`."""

    def __init__(self, path: str, per_bundle: int):
        super().__init__()
        self._path, self._per_bundle = path, per_bundle

    def expand(self, pbegin):
        return (
            pbegin
            | "Path" >> beam.Create([self._path], reshuffle=False)
            | "Read" >> beam.ParDo(ReplayInBundles(self._per_bundle))
        )


class StateTraffic:
    """Counts the SDK harness's user-state requests while installed (`with StateTraffic(...)`).

    `dofns`: {label: DoFn class} whose `process` and timer callbacks are wrapped to say where a
    request was made and to count elements and timer firings; requests are attributed to a
    label by the transform id of their state key (which holds the label).
    """

    def __init__(self, mode: str, dofns: Dict[str, type]):
        self._mode, self._dofns = mode, dofns
        self._local = threading.local()
        self._lock = threading.Lock()
        self.requests = collections.Counter()  # (label, phase, kind) -> requests
        self.cells = collections.Counter()  # (label, state cell, kind) -> requests
        self.calls = collections.Counter()  # (label, "element" | "timer") -> calls
        self._undo = []

    def summary(self, label: str) -> dict:
        """Requests per element and per flush, and what the commits cost per element + flush."""
        elements, flushes = self.calls[(label, "element")], self.calls[(label, "timer")]
        by = collections.Counter()
        for (owner, phase, kind), n in self.requests.items():
            if owner == label:
                by[(phase, kind)] += n
        total = sum(by.values())
        return {
            "elements": elements,
            "flushes": flushes,
            "requests": total,
            "gets_per_element": _ratio(by[("element", "get")], elements),
            "requests_per_element": _ratio(sum(n for (p, _), n in by.items() if p == "element"), elements),
            "gets_per_flush": _ratio(by[("timer", "get")], flushes),
            "requests_per_flush": _ratio(sum(n for (p, _), n in by.items() if p == "timer"), flushes),
            # Writes are sent when the bundle ends: per element + flush they did not coalesce.
            "commit_requests_per_element_or_flush": _ratio(
                sum(n for (p, _), n in by.items() if p == "commit"), elements + flushes
            ),
            "requests_per_element_all_in": _ratio(total, elements),
            # Which cells the requests are for, per flush: what a change of the state's layout saves.
            "per_flush_by_cell": {
                f"{cell} {kind}": _ratio(n, flushes)
                for (owner, cell, kind), n in sorted(self.cells.items())
                if owner == label and n
            },
        }

    def __enter__(self):
        from apache_beam.runners.portability.fn_api_runner import worker_handlers
        from apache_beam.runners.worker import sdk_worker

        # The SDK side's handler: called on the bundle's own thread in both modes (in_memory
        # hands the runner's servicer to the SDK directly; multi_threading sends over gRPC).
        handler = worker_handlers.StateServicer if self._mode == "in_memory" else sdk_worker.GrpcStateHandler
        for method, kind in (("get_raw", "get"), ("append_raw", "append"), ("clear", "clear")):
            self._patch(handler, method, self._counting(getattr(handler, method), kind))
        for label, cls in self._dofns.items():
            self._patch(cls, "process", self._phased(cls.process, label, "element"))
            for spec in _timer_specs(cls):
                wrapper = self._phased(spec._attached_callback, label, "timer")
                self._patch(cls, spec._attached_callback.__name__, wrapper)
                # Beam checks that the spec's callback is the method of that name.
                self._undo.append((spec, "_attached_callback", spec._attached_callback))
                spec._attached_callback = wrapper
        return self

    def __exit__(self, *exc):
        for owner, name, original in reversed(self._undo):
            setattr(owner, name, original)
        self._undo = []

    def _patch(self, owner, name, replacement):
        self._undo.append((owner, name, vars(owner)[name]))
        setattr(owner, name, replacement)

    def _counting(self, original, kind):
        traffic = self

        @functools.wraps(original)
        def counted(handler, state_key, *args, **kwargs):
            if state_key.WhichOneof("type") == "bag_user_state":
                transform = state_key.bag_user_state.transform_id
                label = next((name for name in traffic._dofns if name in transform), "other")
                phase = getattr(traffic._local, "phase", None) or "commit"
                with traffic._lock:
                    traffic.requests[(label, phase, kind)] += 1
                    traffic.cells[(label, state_key.bag_user_state.user_state_id, kind)] += 1
            return original(handler, state_key, *args, **kwargs)

        return counted

    def _phased(self, original, label, phase):
        traffic = self

        def enter():
            traffic._local.phase = phase
            with traffic._lock:
                traffic.calls[(label, phase)] += 1

        if _is_generator(original):

            @functools.wraps(original)
            def phased(*args, **kwargs):
                enter()
                try:
                    yield from original(*args, **kwargs)
                finally:
                    traffic._local.phase = None
        else:

            @functools.wraps(original)
            def phased(*args, **kwargs):
                enter()
                try:
                    return original(*args, **kwargs)
                finally:
                    traffic._local.phase = None

        return phased


def _is_generator(fn) -> bool:
    import inspect

    return inspect.isgeneratorfunction(fn)


def _timer_specs(cls):
    """The class's timer specs with a callback (`@on_timer` attaches the method to its spec; the
    runner calls it by name)."""
    from apache_beam.transforms.userstate import TimerSpec

    return [
        value for value in vars(cls).values() if isinstance(value, TimerSpec) and value._attached_callback is not None
    ]


def _ratio(n, d):
    return round(n / d, 2) if d else None


@contextlib.contextmanager
def no_state_cache():
    """The SDK harness without a state cache, Dataflow's default (`--max_cache_memory_usage_mb=0`)."""
    from apache_beam.runners.portability.fn_api_runner import worker_handlers

    kept = worker_handlers.STATE_CACHE_SIZE_MB
    worker_handlers.STATE_CACHE_SIZE_MB = 0
    try:
        yield
    finally:
        worker_handlers.STATE_CACHE_SIZE_MB = kept
