"""What one train keeps, and writes, over a simulated hour of streaming: state and document sizes.

The train's messages (sim.simulator, the scale workload's config) are
replayed in send order as a streaming runner sees them: the watermark is at
each message's send time, and the flush timer fires once the watermark passes
it. The job's own pieces do the work: `wire.parse_message`, the train's cell
(`occupancy.train_cell`, in memory) and `fold.apply_events`. Measured after
5 minutes and after the hour:

* the train's state as a streaming worker keeps it: the encoded TrainState
  (in FoldOccupancy's `train_cell`; a pickle of it for comparison), its
  size in memory as the SDK harness's state cache weighs it (objsize), and
  the queued events (EventCoder-encoded, the cell's and the `later` bag's);
* the realtime document's storage size as Firestore counts it
  (`documents.storage_size`), and the writes the flushes emitted per minute.
"""

import pickle
from typing import Dict

from apache_beam.runners.worker.statecache import get_deep_size

from occupancy import documents, fold, state_codec, train_cell, train_state, wire
from transforms.coders import EventCoder

_CODER = EventCoder()


def simulate_train(
    doors: int, minutes: float, config, sim_config, seed: int = 1, checkpoints=(5.0,)
) -> Dict[str, dict]:
    """{"5 min": sizes, ..., "end": sizes} for one train of `doors` devices."""
    from sim import simulator

    train = simulator.make_train("t00001", 400, doors=doors)
    start_us = wire.parse_time("2026-11-24T06:00:00Z")
    policy = train_cell.FlushPolicy.of(config)
    cell, later, state = train_cell.TrainCell(), [], train_state.TrainState(capacity=train.capacity)
    counts = {"messages": 0, "flushes": 0, "realtime_writes": 0, "history_writes": 0}
    out, marks = {}, sorted(checkpoints)

    def fire_until(watermark_us: int) -> None:
        nonlocal later
        while (fired := train_cell.flush_at(cell, policy)) is not None and fired <= watermark_us:
            ready, rewrite = train_cell.take_due(cell, fired, policy, later.copy)
            later = later if rewrite is None else list(rewrite)
            if ready:
                result = fold.apply_events(state, ready, config, fired)
                counts["flushes"] += 1
                counts["history_writes"] += len(result.buckets)
                counts["realtime_writes"] += int(result.write_realtime)

    sim = simulator.Simulation((train,), seed, sim_config)
    for i, message in enumerate(sim.messages(start_us, minutes * 60)):
        now_us = start_us + int(message.send_at * 1e6)
        while marks and now_us >= start_us + marks[0] * 60e6:
            out[f"{marks.pop(0):g} min"] = _sizes(state, cell, later, train.train_id, dict(counts), marks_min=None)
        fire_until(now_us)
        event = wire.parse_message(message.payload, str(i), now_us=now_us, max_abs_delta=100, max_future_skew_s=300)
        event = event._replace(train_id=train.train_id, capacity=train.capacity)
        later += train_cell.add(cell, event, policy)
        counts["messages"] += 1
    fire_until(start_us + int((minutes * 60 + 10) * 1e6))
    out["end"] = _sizes(state, cell, later, train.train_id, counts, marks_min=minutes)
    return out


def _sizes(state: train_state.TrainState, cell, later, train_id: str, counts: dict, marks_min) -> dict:
    queued = [*cell.waiting, *later]
    realtime = documents.realtime_write(train_id, state)
    sizes = {
        "train_state_bytes": len(state_codec.encode_state(state)),
        "train_state_pickled_bytes": len(pickle.dumps(state, pickle.HIGHEST_PROTOCOL)),
        "train_state_memory_bytes": get_deep_size(state),
        "queued_events": len(queued),
        "queued_bytes": sum(len(_CODER.encode(e)) for e in queued),
        "realtime_doc_bytes": documents.storage_size(f"realtime/{train_id}", realtime.data),
        **counts,
    }
    if marks_min:
        for name in ("realtime_writes", "history_writes", "messages"):
            sizes[f"{name}_per_min"] = round(counts[name] / marks_min, 1)
    return sizes
