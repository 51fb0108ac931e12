"""Simulated door devices: a fleet of trains stopping at stations, one counter per door.

Two halves, kept apart so that the first can be tested without Pub/Sub:

* `Simulation` is pure and deterministic given its seed: it yields the timed
  messages a fleet of door devices would publish, `TimedMessage(send_at,
  payload, attributes, kind)`, in send order, and records the truth (the
  occupancy the pipeline must arrive at) in `Simulation.truth`.
* `sim.publisher.DevicePublisher` plays a simulation in real time to a Pub/Sub
  topic (or, for some doors, MQTT) from a background thread; its command line
  is `python -m sim.publisher`.

The model: each train runs a route of stations; at a stop every door sees a
burst of alightings then boardings over a few seconds (early stops board more,
later stops alight more, the terminus empties the train, and nobody alights who
did not board), and sends one message per count change with a small delta. In
between, each device sends a heartbeat (delta 0) every 2-3 s: the local runner
only advances its watermark while traffic flows. Faults are injected at
configurable rates: exact re-publishes (duplicates), messages held back by less
than the pipeline's reorder delay (out of order), and payloads the pipeline
must reject (malformed); malformed messages carry no count and use no seq.

Times are integer milliseconds from the start internally, because the wire
format carries milliseconds: the truth then orders events exactly as the
pipeline does (event time, device, seq).

One model (the stops, the doors' bursts, the faults) in one file, longer than
most modules here because its parts change together; the truth they must add
up to, which the demo, the benchmarks and the tests read, is `sim.truth`.
"""

import dataclasses
import heapq
import itertools
import json
import logging
import random
from typing import Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple

from occupancy import wire
from sim.truth import StopTruth, Truth

_LOGGER = logging.getLogger(__name__)

# Message kinds (the fourth element of a TimedMessage).
COUNT = "count"
HEARTBEAT = "heartbeat"
RESET = "reset"
DUPLICATE = "duplicate"
OUT_OF_ORDER = "out_of_order"
MALFORMED = "malformed"
KINDS = (COUNT, HEARTBEAT, RESET, DUPLICATE, OUT_OF_ORDER, MALFORMED)

DEFAULT_PROJECT = "demo-occupancy"
DEFAULT_TOPIC = "occupancy-events"
_MS = 1000  # microseconds per millisecond


@dataclasses.dataclass(frozen=True)
class TrainSpec:
    """One train of the fleet and its door devices."""

    train_id: str
    capacity: int
    name: str = ""
    devices: Tuple[str, ...] = ()


def door_ids(train_id: str, doors: int) -> Tuple[str, ...]:
    """Device ids like `ic1832-car3-door2`: one door on every other car, alternating sides."""
    return tuple(f"{train_id}-car{2 * i + 1}-door{i % 2 + 1}" for i in range(doors))


def make_train(train_id: str, capacity: int, name: str = "", doors: int = 4) -> TrainSpec:
    return TrainSpec(train_id, capacity, name or train_id, door_ids(train_id, doors))


DEMO_FLEET = (
    make_train("ic1832", 320, "IC 1832 Basel - Chur", 4),
    make_train("ic1840", 320, "IC 1840 Geneve - Zuerich", 4),
    make_train("re5", 180, "RE 5 Lausanne - Vallorbe", 3),
    make_train("s3", 140, "S3 Pfaeffikon - Aarau", 3),
)


@dataclasses.dataclass(frozen=True)
class FaultRates:
    """Probability, per valid message, of each injected fault."""

    duplicate: float = 0.02
    out_of_order: float = 0.03
    malformed: float = 0.01


@dataclasses.dataclass(frozen=True)
class SimConfig:
    """The model's knobs; ranges are uniform (low, high) in seconds."""

    first_stop_s: Tuple[float, float] = (1.0, 4.0)
    stop_interval_s: Tuple[float, float] = (20.0, 40.0)
    dwell_s: Tuple[float, float] = (4.0, 8.0)
    heartbeat_s: Tuple[float, float] = (2.0, 3.0)
    stops_per_route: int = 8
    # Share of the capacity that boards at the first stop of the route (less later on).
    board_share: float = 0.35
    # Nobody boards a train fuller than this many times its capacity.
    crush_load: float = 1.2
    max_abs_delta: int = 5
    faults: FaultRates = FaultRates()
    # Held back by less than the pipeline's --reorder_delay_s (2 s), so the in-order result holds.
    out_of_order_delay_s: Tuple[float, float] = (0.5, 1.5)
    duplicate_delay_s: Tuple[float, float] = (0.05, 1.0)
    # A reset per train at the start, so a reused Firestore starts the trains at 0 like the model.
    reset_at_start: bool = True


class TimedMessage(NamedTuple):
    """One message to publish `send_at` seconds after the start."""

    send_at: float
    payload: bytes
    attributes: Dict[str, str]
    kind: str


def _uniform_ms(rng: random.Random, bounds: Tuple[float, float]) -> int:
    return int(round(rng.uniform(*bounds) * 1000))


def malformed_payload(rng: random.Random, device_id: str, event_time_us: int, seq: int) -> bytes:
    """A payload the pipeline must dead-letter: garbage bytes or one bad field."""
    good = json.loads(wire.encode_event(device_id, 1, event_time_us, seq)[0])
    choice = rng.randrange(6)
    if choice == 0:
        return b"\xff\xfe\x00\x81 sensor garbage"  # not UTF-8
    if choice == 1:
        return b"ERR door sensor fault 17"  # neither JSON nor the legacy CSV
    if choice == 2:
        text = json.dumps(good, separators=(",", ":"))
        return text[: len(text) // 2].encode("utf-8")  # truncated JSON
    if choice == 3:
        good["delta"] = str(good["delta"])  # mistyped field
    elif choice == 4:
        good["event_time"] = "yesterday"  # unparseable time
    else:
        good["device_id"] = device_id.replace("-", "/", 1)  # a '/' would address another path
    return json.dumps(good, separators=(",", ":")).encode("utf-8")


def stop_flows(
    rng: random.Random, config: SimConfig, capacity: int, on_board: int, k: int, demand: float = 1.0
) -> Tuple[int, int]:
    """(alighting, boarding) at stop `k` (0: the origin) of a route of `config.stops_per_route`
    stops: early stops board more, later stops alight more, the terminus empties the train,
    nobody boards past the crush load; `demand` scales who wants to board."""
    n = config.stops_per_route
    progress = k / (n - 1)  # 0 at the origin, 1 at the terminus
    if k == n - 1:
        return on_board, 0  # terminus: everybody out, the train turns
    alight = min(on_board, round(on_board * progress * rng.uniform(0.6, 1.0)))
    want = round(capacity * config.board_share * (1 - progress) * demand * rng.uniform(0.5, 1.3))
    room = int(capacity * config.crush_load) - (on_board - alight)
    return alight, max(0, min(want, room))


class _Device:
    """One door counter: its seq and when it last sent something."""

    def __init__(self, device_id: str):
        self.device_id = device_id
        self.seq = 0
        self.last_sent_ms = 0
        self.next_gap_ms = 0


class _TrainSim:
    """One train: generates its messages segment by segment (a stop, or the run between stops)."""

    def __init__(
        self,
        index: int,
        spec: TrainSpec,
        seed: int,
        config: SimConfig,
        start_us: int,
        until_ms: Optional[int],
        truth: Truth,
        keys=None,
        due=None,
    ):
        self.keys = keys
        self.index = index
        self.spec = spec
        self.config = config
        self.start_us = start_us
        self.until_ms = until_ms
        self.truth = truth
        # One generator per train: a train's messages do not depend on how trains interleave.
        self.rng = random.Random(seed)
        self.devices = [_Device(d) for d in spec.devices]
        for device in self.devices:
            device.next_gap_ms = _uniform_ms(self.rng, (0.2, config.heartbeat_s[1]))
        self.occupancy = 0
        # A timetable's stops (sim.timetable.DueStop, in order) or, without one, stops at random.
        self.due = due
        if due is None:
            self.stop_index = self.rng.randrange(max(1, config.stops_per_route // 2))
            self.next_stop_ms = _uniform_ms(self.rng, config.first_stop_s)
        else:
            self._next_due()
        self.frontier_ms = 0  # everything with an event time before this is generated
        self.at_stop = False

    @property
    def done(self) -> bool:
        return self.until_ms is not None and self.frontier_ms >= self.until_ms

    def start(self) -> List[Tuple[int, TimedMessage]]:
        if not self.config.reset_at_start:
            return []
        payload, attributes = wire.encode_reset(self.spec.train_id, self.start_us)
        if self.keys is not None:
            payload = self.keys.sign_control(payload)
        self.truth.record(self.spec.train_id, self.start_us, 0)
        return [(0, TimedMessage(0.0, payload, attributes, RESET))]

    def next_segment(self) -> List[Tuple[int, TimedMessage]]:
        """Generates [frontier, end of the next stop or run) and returns (send_ms, message)s."""
        begin = self.frontier_ms
        stop_index = self.stop_index
        if self.at_stop and self.due is not None:
            end = max(begin + 1, self.leave_ms)
            counts = self._stop_crossings(begin, end)
            self._next_due()
        elif self.at_stop:
            end = begin + _uniform_ms(self.rng, self.config.dwell_s)
            counts = self._stop_crossings(begin, end)
            self.next_stop_ms = begin + _uniform_ms(self.rng, self.config.stop_interval_s)
        else:
            end, counts = self.next_stop_ms, {}
        if self.until_ms is not None:
            end = min(end, self.until_ms)
        at_stop, self.at_stop = self.at_stop, not self.at_stop
        self.frontier_ms = end
        events = self._device_messages(counts, end)
        self._record_truth(events)
        if at_stop:
            self.truth.record_stop(
                StopTruth(
                    self.spec.train_id,
                    stop_index,
                    self.start_us + begin * _MS,
                    self.start_us + end * _MS,
                    sum(d for *_, d in events if d and d > 0),
                    -sum(d for *_, d in events if d and d < 0),
                )
            )
        return self._with_faults(events)

    def _next_due(self) -> None:
        """The timetable's next stop: when the doors open and close, and where it is on its trip."""
        stop = next(self.due)
        self.stop_index = stop.index
        self.next_stop_ms = (stop.arrive_us - self.start_us) // _MS
        self.leave_ms = (stop.depart_us - self.start_us) // _MS

    # ---- the physical model ----------------------------------------------------

    def _stop_crossings(self, begin: int, end: int) -> Dict[str, List[Tuple[int, int]]]:
        """Per device, (time_ms, +1 in / -1 out) for every person through that door."""
        rng, k = self.rng, self.stop_index
        self.stop_index = (k + 1) % self.config.stops_per_route
        alight, board = stop_flows(rng, self.config, self.spec.capacity, self.occupancy, k)
        dwell = end - begin
        crossings = {d.device_id: [] for d in self.devices}
        # People get off first and on after; each through a random door.
        for _ in range(alight):
            crossings[rng.choice(self.spec.devices)].append((begin + rng.randrange(1, max(2, int(dwell * 0.6))), -1))
        for _ in range(board):
            crossings[rng.choice(self.spec.devices)].append((begin + rng.randrange(int(dwell * 0.25), dwell), +1))
        return crossings

    def _count_messages(self, crossings: List[Tuple[int, int]], end: int) -> List[Tuple[int, int]]:
        """Groups a door's crossings into (time_ms, delta) messages: one per count change.

        A group is a run of crossings in one direction, at most `max_abs_delta` long,
        sent when its last person has passed.
        """
        messages, group, limit = [], [], 0
        for t, sign in sorted(crossings):
            if t >= end:
                break  # the run was cut short (`seconds`): nobody passes after the end
            if group and (sign != group[-1][1] or len(group) >= limit):
                messages.append((group[-1][0], sum(s for _, s in group)))
                group = []
            if not group:
                limit = self.rng.randint(1, self.config.max_abs_delta)
            group.append((t, sign))
        if group:
            messages.append((group[-1][0], sum(s for _, s in group)))
        return messages

    def _device_messages(self, crossings, end: int) -> List[Tuple[int, _Device, int, int]]:
        """(time_ms, device, seq, delta) for counts and heartbeats in the segment, in time order."""
        out = []
        for device in self.devices:
            for t, delta in self._count_messages(crossings.get(device.device_id, []), end) + [(end, None)]:
                # Heartbeats fill every silence longer than the device's gap.
                while device.last_sent_ms + device.next_gap_ms < t:
                    out.append(self._send(device, device.last_sent_ms + device.next_gap_ms, 0))
                if delta is not None:
                    out.append(self._send(device, t, delta))
        return sorted(out, key=lambda m: (m[0], m[1].device_id, m[2]))

    def _send(self, device: _Device, t: int, delta: int) -> Tuple[int, _Device, int, int]:
        device.seq += 1
        device.last_sent_ms = t
        device.next_gap_ms = _uniform_ms(self.rng, self.config.heartbeat_s)
        return t, device, device.seq, delta

    def _record_truth(self, events) -> None:
        # The pipeline's semantics: event-time order, ties by device then seq, clamped at 0.
        for t, _device, _seq, delta in events:
            if delta:
                self.occupancy = max(0, self.occupancy + delta)
                self.truth.record(self.spec.train_id, self.start_us + t * _MS, self.occupancy)

    # ---- faults ----------------------------------------------------------------

    def _with_faults(self, events) -> List[Tuple[int, TimedMessage]]:
        faults, rng = self.config.faults, self.rng
        out = []
        for t, device, seq, delta in events:
            event_us = self.start_us + t * _MS
            payload, attributes = wire.encode_event(device.device_id, delta, event_us, seq)
            if self.keys is not None:
                payload = self.keys.sign(device.device_id, payload)
            kind, send = (COUNT if delta else HEARTBEAT), t
            if rng.random() < faults.out_of_order:
                # Held back: messages with later event times overtake it.
                kind, send = OUT_OF_ORDER, t + _uniform_ms(rng, self.config.out_of_order_delay_s)
            out.append((send, TimedMessage(send / 1000, payload, attributes, kind)))
            if rng.random() < faults.duplicate:
                # The device did not see the ack and publishes the very same message again.
                again = send + _uniform_ms(rng, self.config.duplicate_delay_s)
                out.append((again, TimedMessage(again / 1000, payload, dict(attributes), DUPLICATE)))
            if rng.random() < faults.malformed:
                bad = malformed_payload(rng, device.device_id, event_us, seq)
                out.append((t, TimedMessage(t / 1000, bad, {"simulated_fault": MALFORMED}, MALFORMED)))
        return out


class Simulation:
    """Deterministic messages of a fleet of door devices, and the truth they imply.

    `messages()` yields TimedMessages in send order (lazily: `seconds=None` runs
    for ever) and fills `truth` as it goes. Same fleet, seed, config and
    `start_us` give the same messages.
    """

    def __init__(
        self,
        fleet: Sequence[TrainSpec] = DEMO_FLEET,
        seed: int = 0,
        config: SimConfig = SimConfig(),
        keys=None,
        timetable=None,
    ):
        if not fleet:
            raise ValueError("the fleet has no trains")
        # sim.keyring.Keyring: every message signed by its device (a reset by the control key).
        self.keys = keys
        # (train_id, start_us) -> the train's stops from then on (sim.timetable.stops_from): the
        # trains stop when it says, each stop's place on its trip deciding who gets on and off.
        self.timetable = timetable
        self.fleet = tuple(fleet)
        self.seed = seed
        self.config = config
        self.truth = Truth()

    def messages(self, start_us: int, seconds: Optional[float] = None) -> Iterator[TimedMessage]:
        """Messages of a run that starts at `start_us` (epoch microseconds, cut to milliseconds)."""
        start_us -= start_us % _MS  # the wire carries milliseconds
        self.truth = Truth()
        until_ms = None if seconds is None else int(seconds * 1000)
        master = random.Random(self.seed)
        trains = [
            _TrainSim(
                i,
                spec,
                master.getrandbits(64),
                self.config,
                start_us,
                until_ms,
                self.truth,
                self.keys,
                self.timetable(spec.train_id, start_us) if self.timetable else None,
            )
            for i, spec in enumerate(self.fleet)
        ]
        heap, order = [], itertools.count()
        for train in trains:
            for send_ms, message in train.start():
                heapq.heappush(heap, (send_ms, next(order), message))
        while True:
            active = [t for t in trains if not t.done]
            # Nothing still to be generated can be sent before the slowest train's frontier.
            frontier = min((t.frontier_ms for t in active), default=None)
            if heap and (frontier is None or heap[0][0] <= frontier):
                yield heapq.heappop(heap)[2]
                continue
            if frontier is None:
                return
            train = min(active, key=lambda t: (t.frontier_ms, t.index))
            for send_ms, message in train.next_segment():
                heapq.heappush(heap, (send_ms, next(order), message))
