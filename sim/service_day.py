"""Service days with imperfect door sensors: the workload of `make accuracy`.

Pure and seeded. A train runs trips terminus to terminus all day; at each stop
riders alight (a share of those on board) and board (more at the first stops),
each through a random door; the train is empty at each terminus. Every door
counts what it sees through a `DoorError` (missed crossings, double counts,
in/out swaps, a bias on ins, or dead: sends nothing) and sends, per stop, one
message with its ins and one with its outs. The truth (the real occupancy over time) is kept per
train, and so is which doors are faulty.

Two minutes after the last stop of a trip the operator's systems send a terminus event
(`balancing=True`): the pipeline sets the train to 0 and records the residual.
"""

import dataclasses
import datetime
import random
from typing import Dict, List, NamedTuple, Optional, Tuple

from occupancy import wire
from sim.truth import step_value

_S = 1_000_000


@dataclasses.dataclass(frozen=True)
class DoorError:
    """How one door counter errs, per person crossing."""

    miss: float = 0.0  # not counted
    double: float = 0.0  # counted twice
    swap: float = 0.0  # counted in the other direction
    bias_in: float = 0.0  # ins over-counted by this fraction (negative: under-counted)
    dead: bool = False  # sends nothing at all

    @property
    def faulty(self) -> bool:
        return self.dead or abs(self.bias_in) >= 0.05


def observe(rng: random.Random, error: DoorError, boarded: int, alighted: int) -> Tuple[int, int]:
    """(ins, outs) a door counts for `boarded` people in and `alighted` out."""
    counted = {"in": 0, "out": 0}
    for true_way, n in (("in", boarded), ("out", alighted)):
        other = "out" if true_way == "in" else "in"
        for _ in range(n):
            r = rng.random()
            if r < error.miss:
                continue
            way = other if r < error.miss + error.swap else true_way
            times = 2 if rng.random() < error.double else 1
            if way == "in" and error.bias_in:
                if error.bias_in > 0 and rng.random() < error.bias_in:
                    times += 1
                elif error.bias_in < 0 and rng.random() < -error.bias_in:
                    times -= 1
            counted[way] += times
    return counted["in"], counted["out"]


class Train(NamedTuple):
    train_id: str
    capacity: int
    doors: Tuple[str, ...]  # device ids
    door_names: Tuple[str, ...]  # registry door names, "car3-door1"
    errors: Tuple[DoorError, ...]


@dataclasses.dataclass
class Day:
    """What a simulated day sends, and what really happened."""

    messages: List[Tuple[bytes, dict]] = dataclasses.field(default_factory=list)
    truth: Dict[str, List[Tuple[int, int]]] = dataclasses.field(default_factory=dict)  # train -> (t_us, value)
    termini: Dict[str, List[int]] = dataclasses.field(default_factory=dict)  # train -> terminus t_us
    # Moments between stops, when every door has reported the last stop: where counting
    # error is measured (not the seconds of reporting lag within a stop).
    settled: Dict[str, List[int]] = dataclasses.field(default_factory=dict)
    start_us: int = 0
    end_us: int = 0


def fleet(trains: int, doors: int, capacity: int, errors_for) -> List[Train]:
    """`errors_for(train_index, door_index)` -> DoorError."""
    out = []
    for i in range(trains):
        train_id = f"svc{i:03d}"
        names = tuple(f"car{d + 1}-door1" for d in range(doors))
        out.append(
            Train(
                train_id,
                capacity,
                tuple(f"{train_id}-{n}" for n in names),
                names,
                tuple(errors_for(i, d) for d in range(doors)),
            )
        )
    return out


def simulate_day(
    trains: List[Train],
    date: datetime.date,
    seed: int,
    balancing: bool = True,
    stops: int = 12,
    trip_minutes: int = 50,
    turnaround_minutes: int = 10,
    first_hour: int = 6,
    last_hour: int = 22,
    seqs: Optional[Dict[str, int]] = None,
) -> Day:
    """One service day of every train. `seqs` carries each device's seq across days."""
    rng = random.Random(seed)
    seqs = seqs if seqs is not None else {}
    day = Day()
    midnight = datetime.datetime.combine(date, datetime.time(), tzinfo=datetime.timezone.utc)
    day.start_us = wire.to_micros(midnight + datetime.timedelta(hours=first_hour))
    day.end_us = wire.to_micros(midnight + datetime.timedelta(hours=last_hour))
    stop_gap_us = trip_minutes * 60 * _S // (stops - 1)
    for train in trains:
        truth = day.truth.setdefault(train.train_id, [(day.start_us, 0)])
        termini = day.termini.setdefault(train.train_id, [])
        settled = day.settled.setdefault(train.train_id, [])
        t = day.start_us + rng.randrange(0, 20 * 60) * _S  # trains start staggered
        while t + trip_minutes * 60 * _S <= day.end_us:
            load = 0
            peak = rng.uniform(0.5, 1.1)  # how busy this trip is (x capacity at its fullest)
            for stop in range(stops):
                at = t + stop * stop_gap_us
                last = stop == stops - 1
                alight = (
                    load
                    if last
                    else (0 if stop == 0 else sum(rng.random() < 0.25 + 0.5 * stop / stops for _ in range(load)))
                )
                board = 0 if last else int(rng.gauss(peak * train.capacity * (1.6 / stops) * (1.5 - stop / stops), 5))
                board = max(0, min(board, train.capacity * 2 - (load - alight)))
                ins = [0] * len(train.doors)
                outs = [0] * len(train.doors)
                for _ in range(board):
                    ins[rng.randrange(len(train.doors))] += 1
                for _ in range(alight):
                    outs[rng.randrange(len(train.doors))] += 1
                load += board - alight
                truth.append((at + 30 * _S, load))  # everyone is through the doors within 30 s
                if not last:
                    settled.append(at + 90 * _S)
                for d, device in enumerate(train.doors):
                    error = train.errors[d]
                    if error.dead or (ins[d] == 0 and outs[d] == 0):
                        continue
                    seen_in, seen_out = observe(rng, error, ins[d], outs[d])
                    # A counter reports each direction (most door counters do): one message
                    # for the ins and one for the outs of the stop, when there are any.
                    for delta in (seen_in, -seen_out):
                        if delta:
                            seqs[device] = seqs.get(device, 0) + 1
                            when = at + rng.randrange(5, 30) * _S
                            day.messages.append(wire.encode_event(device, delta, when, seqs[device]))
            arrival = t + (stops - 1) * stop_gap_us
            # Two minutes after arrival, once every door has reported the last stop (the wire
            # format carries milliseconds).
            terminus = (arrival + 120 * _S) // 1000 * 1000
            termini.append(terminus)
            if balancing:
                day.messages.append(wire.encode_reset(train.train_id, terminus, kind=wire.TERMINUS))
            t = arrival + turnaround_minutes * 60 * _S
    return day


def value_at(series: List[Tuple[int, int]], t_us: int) -> int:
    """The step function's value at t (0 before its first point: every train starts empty)."""
    value = step_value(series, t_us)
    return 0 if value is None else value
