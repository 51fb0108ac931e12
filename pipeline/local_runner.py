"""What the local runner (BundleBasedDirectRunner) needs to keep up with a fleet's traffic.

Measured (docs/faults.md, "long_run"): on this runner about half of the
pipeline process's CPU went to `apache_beam.transforms.userstate.get_dofn_specs`,
which walks every method of a DoFn through `inspect.signature` (forty-odd
methods, most of them DoFn's own). The runner calls it several times for every
bundle of every ParDo (`is_stateful_dofn` when it schedules and when it starts
a bundle, `DoFnSignature` and `validate_stateful_dofn` in the DoFnRunner it
builds per bundle), and it pulls at most 10 Pub/Sub messages per bundle. The
job applied about 45 counts a second there, against the 250 a second a
50-train fleet sends in the long-run scenario.

The specs of a DoFn are declared on its class (StateParam/TimerParam defaults
of its methods), so they are computed once per class here. A DoFn that wraps a
callable (beam.Map and friends) takes its `process` signature from the
callable, which differs per instance: those are not cached. Dataflow and the
portable runners build a DoFn's signature once per bundle processor, so this is
applied only to the local runner (`pipeline.main`).
"""
import functools
import logging

from apache_beam.runners.direct import transform_evaluator
from apache_beam.transforms import core, userstate

_LOGGER = logging.getLogger(__name__)
_original_get_dofn_specs = userstate.get_dofn_specs


class _SpecKey:
    """A DoFn class as an lru_cache key, carrying one instance to compute the specs from."""
    __slots__ = ("dofn_class", "dofn")

    def __init__(self, dofn):
        self.dofn_class, self.dofn = type(dofn), dofn

    def __hash__(self):
        return hash(self.dofn_class)

    def __eq__(self, other):
        return isinstance(other, _SpecKey) and other.dofn_class is self.dofn_class


@functools.lru_cache(maxsize=None)
def _cached_specs(key: _SpecKey):
    return _original_get_dofn_specs(key.dofn)


def get_dofn_specs(dofn):
    """`userstate.get_dofn_specs`, computed once per DoFn class (not for wrapped callables)."""
    if isinstance(dofn, core.CallableWrapperDoFn):
        return _original_get_dofn_specs(dofn)
    state_specs, timer_specs = _cached_specs(_SpecKey(dofn))
    return set(state_specs), set(timer_specs)  # callers may mutate what they get


def install() -> None:
    """Makes the local runner compute each DoFn class's state and timer specs once."""
    if userstate.get_dofn_specs is get_dofn_specs:
        return
    userstate.get_dofn_specs = get_dofn_specs
    # Imported by name there, so the module's own reference is replaced too.
    transform_evaluator.get_dofn_specs = get_dofn_specs
    _LOGGER.info("Local runner: DoFn state and timer specs computed once per class")
