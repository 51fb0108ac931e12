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

import grpc
from apache_beam.runners.direct import transform_evaluator
from apache_beam.transforms import core, userstate

_LOGGER = logging.getLogger(__name__)
_original_get_dofn_specs = userstate.get_dofn_specs
_insecure_channel = grpc.insecure_channel


class _GrpcWithUnlimitedChannels:
    """The `grpc` module as the Pub/Sub subscriber client sees it, with `insecure_channel` (only
    used for the emulator) giving channels without message size limits."""

    def __getattr__(self, name):
        return _emulator_channel if name == "insecure_channel" else getattr(grpc, name)


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


def _emulator_channel(target, options=None, compression=None):
    """`grpc.insecure_channel` for the Pub/Sub emulator with the message size limits the client
    library gives a real Pub/Sub channel (none). Without them the local runner's pull of 10
    messages failed with RESOURCE_EXHAUSTED once they passed gRPC's default 4 MiB (several
    1 MB hostile payloads in one pull), was never acknowledged, and came back the same way, so
    those messages never arrived (the hostile_input flake: 10 of 1,000 dead letters missing)."""
    options = list(options or []) + [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
    return _insecure_channel(target, options=options, compression=compression)


def install() -> None:
    """Makes the local runner compute each DoFn class's state and timer specs once, and pull
    from the Pub/Sub emulator without gRPC's 4 MiB message limit."""
    import os

    if os.environ.get("PUBSUB_EMULATOR_HOST"):
        from google.pubsub_v1.services.subscriber import client as subscriber_client

        if not isinstance(subscriber_client.grpc, _GrpcWithUnlimitedChannels):
            subscriber_client.grpc = _GrpcWithUnlimitedChannels()
    if userstate.get_dofn_specs is get_dofn_specs:
        return
    userstate.get_dofn_specs = get_dofn_specs
    # Imported by name there, so the module's own reference is replaced too.
    transform_evaluator.get_dofn_specs = get_dofn_specs
    _LOGGER.info("Local runner: DoFn state and timer specs computed once per class")
