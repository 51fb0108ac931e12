"""The benchmark's workload: simulated door devices, re-stamped as they are sent, and its truth.

`sim.simulator` generates a fleet's messages with a fixed seed (station
bursts, heartbeats, duplicates). The benchmark keeps their order and content
(device, seq, delta) but not their timing: every message is stamped with the
moment it is sent (event time = publish time, milliseconds, as on the wire),
so that publishing as fast as possible gives event times a streaming runner
can release at once, and publish-to-realtime latency can be read from them.
A duplicate is the very same payload as its original, sent again.

The truth is computed here from what was actually sent, independently of
`occupancy.fold`: unique (device, seq), in (event time, device, seq) order,
clamped at zero.
"""

import argparse
import dataclasses
import json
import time
from typing import Callable, Dict, Iterator, List, NamedTuple, Tuple

from adapters import registry
from occupancy import wire
from sim import simulator
from sim.keyring import Keyring

WARMUP_TRAIN = "warmup"
WARMUP_DEVICE = "warmup-car1-door1"
CAPACITIES = (320, 240, 180)
# Bench-only attributes: the runner ceiling keys and sums on them without parsing the payload.
ATTR_TRAIN, ATTR_DELTA, ATTR_T_US = "bench_train", "bench_delta", "bench_t_us"


@dataclasses.dataclass(frozen=True)
class WorkloadSpec:
    trains: int = 12
    doors: int = 4
    seconds: float = 300.0
    seed: int = 20261124
    duplicate_rate: float = 0.02

    def fleet(self) -> Tuple[simulator.TrainSpec, ...]:
        return tuple(
            simulator.make_train(f"train{i:02d}", CAPACITIES[i % len(CAPACITIES)], doors=self.doors)
            for i in range(self.trains)
        )


SMOKE = WorkloadSpec(trains=3, doors=2, seconds=20.0)


def add_arguments(parser: argparse.ArgumentParser, default: WorkloadSpec = WorkloadSpec()) -> None:
    group = parser.add_argument_group("workload (sim.simulator, fixed seed)")
    group.add_argument(
        "--trains",
        type=int,
        default=None,
        help=f"Trains in the fleet (default {default.trains}; smoke {SMOKE.trains}).",
    )
    group.add_argument(
        "--doors",
        type=int,
        default=None,
        help=f"Door devices per train (default {default.doors}; smoke {SMOKE.doors}).",
    )
    group.add_argument(
        "--sim-seconds",
        type=float,
        default=None,
        help=f"Simulated seconds of traffic to generate (default {default.seconds:g}; smoke {SMOKE.seconds:g}).",
    )
    group.add_argument("--seed", type=int, default=default.seed, help="Simulator seed.")
    group.add_argument(
        "--duplicate-rate",
        type=float,
        default=default.duplicate_rate,
        help="Share of messages a device publishes twice.",
    )


def spec_from_args(args: argparse.Namespace, smoke: bool = False) -> WorkloadSpec:
    base = SMOKE if smoke else WorkloadSpec()
    return WorkloadSpec(
        trains=args.trains or base.trains,
        doors=args.doors or base.doors,
        seconds=args.sim_seconds or base.seconds,
        seed=args.seed,
        duplicate_rate=args.duplicate_rate,
    )


def spec_arguments(spec: WorkloadSpec) -> List[str]:
    """The command-line flags that rebuild `spec` in a child process."""
    return [
        f"--trains={spec.trains}",
        f"--doors={spec.doors}",
        f"--sim-seconds={spec.seconds}",
        f"--seed={spec.seed}",
        f"--duplicate-rate={spec.duplicate_rate}",
    ]


class Item(NamedTuple):
    """One message to send, before stamping."""

    train_id: str
    device_id: str
    seq: int
    delta: int
    duplicate: bool


class Sent(NamedTuple):
    """One unique event as sent: its event time is the moment it was sent."""

    train_id: str
    device_id: str
    seq: int
    delta: int
    t_us: int
    sent_s: float  # time.time() when it was handed to the publisher


# The simulated devices' keys, the same in every process of a run (derived from this seed).
KEYS = Keyring(seed=b"bench-workload")


def build(spec: WorkloadSpec) -> List[Item]:
    """The simulated messages, in send order (no resets, no malformed, nothing held back)."""
    config = simulator.SimConfig(
        faults=simulator.FaultRates(duplicate=spec.duplicate_rate, out_of_order=0.0, malformed=0.0),
        reset_at_start=False,
    )
    fleet = spec.fleet()
    train_of = {device: t.train_id for t in fleet for device in t.devices}
    items = []
    for message in simulator.Simulation(fleet, spec.seed, config).messages(0, spec.seconds):
        body = json.loads(message.payload)
        items.append(
            Item(
                train_of[body["device_id"]],
                body["device_id"],
                body["seq"],
                body["delta"],
                message.kind == simulator.DUPLICATE,
            )
        )
    return items


def encode(train_id: str, device_id: str, seq: int, delta: int, t_us: int, keys=None):
    """A device's message; signed with `keys` (KEYS for the pipeline, which verifies; the
    prototype and the runner ceiling take the bare JSON)."""
    payload, attributes = wire.encode_event(device_id, delta, t_us, seq)
    if keys is not None:
        payload = keys.sign(device_id, payload)
    attributes.update({ATTR_TRAIN: train_id, ATTR_DELTA: str(delta), ATTR_T_US: str(t_us)})
    return payload, attributes


def stamp(
    items: List[Item], clock: Callable[[], float] = time.time, keys=None
) -> Iterator[Tuple[bytes, Dict[str, str], Sent, bool]]:
    """(payload, attributes, event, is_duplicate) per item, stamped by `clock` when taken.

    A duplicate carries its original's payload and event (so `set()` of the events de-duplicates).
    """
    originals = {}
    for item in items:
        if item.duplicate:
            payload, attributes, sent = originals[(item.device_id, item.seq)]
            yield payload, dict(attributes), sent, True
            continue
        now = clock()
        t_us = int(now * 1000) * 1000  # the wire carries milliseconds
        payload, attributes = encode(item.train_id, item.device_id, item.seq, item.delta, t_us, keys)
        sent = Sent(item.train_id, item.device_id, item.seq, item.delta, t_us, now)
        originals[(item.device_id, item.seq)] = (payload, attributes, sent)
        yield payload, attributes, sent, False


def truth(sent: List[Sent]) -> Dict[str, int]:
    """Final occupancy per train: unique events in (time, device, seq) order, clamped at 0."""
    values = {}
    for event in sorted(set(sent), key=lambda e: (e.t_us, e.device_id, e.seq)):
        values[event.train_id] = max(0, values.get(event.train_id, 0) + event.delta)
    return values


def plain_sums(sent: List[Sent]) -> Dict[str, int]:
    """Every delta sent, duplicates included, summed without clamping: the runner ceiling's result."""
    sums = {}
    for event in sent:
        sums[event.train_id] = sums.get(event.train_id, 0) + event.delta
    return sums


def last_count_times(sent: List[Sent]) -> Dict[str, int]:
    """Per train, the event time of its last non-zero delta: realtime `last_updated` at the end."""
    last = {}
    for event in sent:
        if event.delta:
            last[event.train_id] = max(last.get(event.train_id, 0), event.t_us)
    return last


def register(client, spec: WorkloadSpec) -> None:
    """The fleet and the warm-up device in the registry (collections `trains`, `devices`), with
    the devices' public keys (KEYS)."""
    fleet = spec.fleet() + (simulator.make_train(WARMUP_TRAIN, 100, doors=1),)
    for train in fleet:
        registry.set_train(client, "trains", train.train_id, train.capacity, train.name)
        for device in train.devices:
            registry.register_device(client, "devices", device, train.train_id)
    KEYS.register(client, "devices", [d for train in fleet for d in train.devices])


def train_of_devices(spec: WorkloadSpec) -> Dict[str, str]:
    return {device: t.train_id for t in spec.fleet() for device in t.devices}


def publish_all(publisher, topic: str, items: List[Item], keys=None) -> Tuple[List[Sent], float]:
    """Publishes every item as fast as the client takes them, stamped at publish time.

    Returns what was sent and the wall time of the first publish.
    """
    sent, futures = [], []
    first = time.time()
    for payload, attributes, event, _ in stamp(items, keys=keys):
        sent.append(event)
        futures.append(publisher.publish(topic, payload, **attributes))
    for future in futures:
        future.result(timeout=120)
    return sent, first
