"""`make bench`'s `flush_policy` step: what a train's flushes cost and how fresh they leave its
numbers, for the flush policy at several `--flush_interval_s`, and for the policy it replaced.

A fleet's messages (the scale workload: stops every 60-120 s, doors open 20-40 s, heartbeats
every 25-35 s; sim.simulator) are replayed per train in send order as a streaming runner sees
them: the watermark at each message's send time, a train's timer fired once the watermark
passes it. The job's own pieces do the work: `wire.parse_message`, `occupancy.train_cell` and
`fold.apply_events`. Per policy:

* flushes per message and realtime writes per stop (a stop: a train's counts with no gap of
  `STOP_GAP_S` between them);
* in event time, from a count's event time to the flush that applied it: the first count at
  a stop (the load as the doors open) and the last (the load as the train leaves), p50 and
  p95. The watermark's own lag behind the doors comes on top, the same for every policy.

`before`: the policy before this one, kept here as the reference: each event released at the
end of its bucket (`--flush_interval_s`, epoch-aligned) plus the reorder delay, heartbeats
like counts, one timer per train never sooner than one interval after the last flush.
"""

from typing import Dict, List, Optional

from bench.measure import percentile
from bench.report_cells import cell
from occupancy import fold, train_cell, train_state, wire
from pipeline.options import DEFAULT_FLUSH_INTERVAL_S

STOP_GAP_S = 10.0
INTERVALS_S = (1.0, 2.0, 5.0, 10.0)
REORDER_DELAY_S = 2.0


class Before:
    """The replaced policy, for comparison: one train's queue and timer."""

    def __init__(self, config: fold.FoldConfig):
        self._config, self.waiting, self.armed, self.last_flush = config, [], None, 0

    def _release(self, event) -> int:
        return (
            self._config.bucket_start(event.event_time_us)
            + self._config.flush_interval_us
            + self._config.reorder_delay_us
        )

    def add(self, event) -> None:
        self.waiting.append(event)
        release = max(self._release(event), self.last_flush + self._config.flush_interval_us)
        if self.armed is None or release < self.armed:
            self.armed = release

    def due(self) -> Optional[int]:
        return self.armed

    def fire(self) -> List:
        fired = self.armed
        taken = [e for e in self.waiting if self._release(e) <= fired]
        self.waiting = [e for e in self.waiting if self._release(e) > fired]
        self.last_flush, self.armed = fired, None
        if self.waiting:
            self.armed = max(min(self._release(e) for e in self.waiting), fired + self._config.flush_interval_us)
        return taken


class Now:
    """The job's policy (occupancy.train_cell), driven as FoldOccupancy drives it."""

    def __init__(self, config: fold.FoldConfig):
        self._policy, self._cell, self._later = train_cell.FlushPolicy.of(config), train_cell.TrainCell(), []

    def add(self, event) -> None:
        self._later += train_cell.add(self._cell, event, self._policy)

    def due(self) -> Optional[int]:
        return train_cell.flush_at(self._cell, self._policy)

    def fire(self) -> List:
        fired = self.due()
        taken, rewrite = train_cell.take_due(self._cell, fired, self._policy, lambda: self._later)
        if rewrite is not None:
            self._later = list(rewrite)
        return taken


def replay(events_by_train: Dict[str, list], config: fold.FoldConfig, policy) -> dict:
    """Replays each train's (arrival_us, event) in arrival order under `policy` (Before or Now)."""
    totals = {"messages": 0, "flushes": 0, "realtime_writes": 0}
    applied_at: Dict[str, int] = {}  # event_id -> the flush that applied it
    for arrivals in events_by_train.values():
        train = (policy(config), train_state.TrainState())
        for arrival_us, event in arrivals:
            _fire_until(train, arrival_us, config, totals, applied_at)
            train[0].add(event)
            totals["messages"] += 1
        _fire_until(train, 2**62, config, totals, applied_at)
    return {**totals, "applied_at": applied_at}


def _fire_until(train, watermark_us: int, config, totals: dict, applied_at: dict) -> None:
    queue, state = train
    while queue.due() is not None and queue.due() <= watermark_us:
        fired = queue.due()
        taken = queue.fire()
        if taken:
            result = fold.apply_events(state, taken, config, fired)
            totals["flushes"] += 1
            totals["realtime_writes"] += int(result.write_realtime)
            applied_at.update((e.event_id, fired) for e in taken)


def stops(events_by_train: Dict[str, list]) -> List[list]:
    """Each train's counts of people grouped into stops (no gap of STOP_GAP_S inside one)."""
    out = []
    for arrivals in events_by_train.values():
        counts = sorted((e for _, e in arrivals if e.delta), key=lambda e: e.event_time_us)
        stop: list = []
        for event in counts:
            if stop and event.event_time_us - stop[-1].event_time_us > STOP_GAP_S * 1e6:
                out.append(stop)
                stop = []
            stop.append(event)
        if stop:
            out.append(stop)
    return out


def measure(events_by_train: Dict[str, list], name: str, config: fold.FoldConfig, policy) -> dict:
    result = replay(events_by_train, config, policy)
    applied_at, visits = result["applied_at"], stops(events_by_train)

    def lag_s(event) -> float:
        return (applied_at[event.event_id] - event.event_time_us) / 1e6

    first = [lag_s(stop[0]) for stop in visits]
    last = [lag_s(stop[-1]) for stop in visits]
    return {
        "policy": name,
        "flush_interval_s": config.flush_interval_us / 1e6,
        "messages": result["messages"],
        "stops": len(visits),
        "flushes_per_message": round(result["flushes"] / result["messages"], 3),
        "realtime_writes_per_stop": round(result["realtime_writes"] / len(visits), 1),
        "first_count_s": {"p50": percentile(first, 50), "p95": percentile(first, 95)},
        "departure_s": {"p50": percentile(last, 50), "p95": percentile(last, 95)},
    }


def workload(trains: int, minutes: float) -> Dict[str, list]:
    """The scale workload's messages, parsed, per train: (arrival_us, event) in send order."""
    from bench.scale_fleet import SCALE_SIM, SEED, fleet
    from sim import simulator

    spec = fleet(trains)
    train_of = {device: t.train_id for t in spec for device in t.devices}
    start_us = wire.parse_time("2026-11-24T06:00:00Z")
    out: Dict[str, list] = {t.train_id: [] for t in spec}
    for i, message in enumerate(simulator.Simulation(spec, SEED, SCALE_SIM).messages(start_us, minutes * 60)):
        now_us = start_us + int(message.send_at * 1e6)
        event = wire.parse_message(message.payload, str(i), now_us=now_us, max_abs_delta=100, max_future_skew_s=300)
        out[train_of[event.device_id]].append((now_us, event))
    return out


def run(trains: int = 100, minutes: float = 30.0) -> dict:
    events = workload(trains, minutes)
    delay_us = int(REORDER_DELAY_S * 1e6)

    def config(interval_s: float) -> fold.FoldConfig:
        return fold.FoldConfig(flush_interval_us=int(interval_s * 1e6), reorder_delay_us=delay_us)

    rows = [measure(events, "before", config(1.0), Before)]
    rows += [measure(events, "now", config(s), Now) for s in INTERVALS_S]
    return {"trains": trains, "minutes": minutes, "reorder_delay_s": REORDER_DELAY_S, "rows": rows}


def default_and_before(results: dict):
    """(the row at the job's default interval, the replaced policy's row)."""
    rows = results["rows"]
    now = next(r for r in rows if r["policy"] == "now" and r["flush_interval_s"] == DEFAULT_FLUSH_INTERVAL_S)
    return now, next(r for r in rows if r["policy"] == "before")


FLUSH_POLICY_HEADER = (
    "flush policy (event time)",
    "--flush_interval_s",
    "messages",
    "stops",
    "flushes/message",
    "realtime writes/stop",
    "first count p50 s",
    "first count p95 s",
    "departure p50 s",
    "departure p95 s",
)


def flush_policy_rows(results: dict) -> List[tuple]:
    policy = results.get("flush_policy")
    if not policy:
        return []
    label = {"before": "before (bucket end + delay, heartbeats alike)", "now": "now (occupancy.train_cell)"}
    return [
        (
            label[r["policy"]]
            + (" (the default)" if r["policy"] == "now" and r["flush_interval_s"] == DEFAULT_FLUSH_INTERVAL_S else ""),
            cell(r["flush_interval_s"]),
            cell(r["messages"]),
            cell(r["stops"]),
            cell(r["flushes_per_message"]),
            cell(r["realtime_writes_per_stop"]),
            *(cell(r[k][q]) for k in ("first_count_s", "departure_s") for q in ("p50", "p95")),
        )
        for r in policy["rows"]
    ]


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=1))
