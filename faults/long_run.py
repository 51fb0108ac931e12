"""Scenario 8: a long run: an hour of a 50-train fleet's counts, time-compressed, through the
running pipeline.

50 trains x 3 doors, 15 counts a train a minute (45,000 for the hour), published
at `RATE` a second with event time = publish time, with the trains' heartbeats
every 2 s. Measured while it runs: the pipeline process's resident memory every
second; every 5 s what the pipeline has applied against what was sent and how
far behind the devices it is (faults.harness.Progress); at the 5-minute mark
and at the end: every train's realtime document (Firestore's storage size) and
the TrainState a job seeds from it, pickled. The queue a train keeps in Beam
state cannot be read from outside the job: `make bench-scale` measures it over a
simulated hour (docs/sizing.md).

Loss is told from lag: after the last publish the scenario waits `DEADLINE_S`
for exact numbers; if they are not there, it keeps waiting while the pipeline
makes progress (until exact, or `STUCK_S` without any, or `MAX_WAIT_S`), then
counts **late** (applied after the deadline) apart from **lost** (never
applied). The rate the pipeline sustained is the applied counts per second
while it was behind.

Expected: counts exact (0 lost, 0 double) within the deadline (0 late), memory
flat (the last tenth of the run within 10 % + 10 MB of the second tenth),
per-train sizes at the end within 10 % of the 5-minute mark.
"""

import pickle
import time

from bench.measure import rss_mb
from faults.harness import Progress, Scenario
from occupancy import documents

NAME = "long_run"
TRAINS, DOORS, PER_TRAIN_PER_MIN, RATE = 50, 3, 15, 250
# Seconds after the last publish within which the numbers must be exact.
DEADLINE_S = 120
# Past the deadline: give up after this long without progress, or this long in all.
STUCK_S, MAX_WAIT_S = 60, 1800


def _sizes(scenario) -> dict:
    """Largest realtime document (storage bytes) and seeded TrainState (pickled bytes) over trains."""
    docs = {d.id: d.to_dict() or {} for d in scenario.client.collection("realtime").stream()}
    return {
        "realtime_doc_bytes": max(documents.storage_size(f"realtime/{t}", d) for t, d in docs.items()),
        "train_state_bytes": max(
            len(pickle.dumps(documents.state_from_documents(d, None, 1000), pickle.HIGHEST_PROTOCOL))
            for d in docs.values()
        ),
    }


def sustained_rate(samples) -> float:
    """Counts applied per second over the samples taken while the pipeline was behind
    (applied < sent at the previous sample); 0 without two such samples."""
    behind = [b for a, b in zip(samples, samples[1:]) if a["applied"] < a["sent"]]
    if len(behind) < 2:
        return 0.0
    first, last = behind[0], behind[-1]
    return (last["applied"] - first["applied"]) / max(1e-9, last["t_s"] - first["t_s"])


def run(context, short: bool, rate: int = RATE) -> dict:
    minutes = 10 if short else 60
    total = TRAINS * PER_TRAIN_PER_MIN * minutes
    scenario = Scenario(context, NAME, trains=TRAINS, doors=DOORS, seed=8)
    scenario.heartbeats.interval_s = 2.0
    progress = Progress(scenario, 5.0)
    try:
        pipeline = scenario.start_primed()
        progress.start()
        samples, at_five, futures = [], None, []
        began = time.monotonic()
        for i in range(total):
            futures.append(scenario.devices.publish(scenario.devices.make(), wait=False))
            if i % rate == 0:
                time.sleep(max(0.0, i / rate - (time.monotonic() - began)))
                samples.append(rss_mb(pipeline.pid))
            if at_five is None and i >= total * 5 / minutes:
                at_five = _sizes(scenario)
        for future in futures:
            future.result(timeout=120)
        published = time.monotonic()
        recovery = scenario.wait_exact(pipeline, timeout_s=DEADLINE_S)
        late = 0
        ended = "exact"
        if recovery is None:
            at_deadline = sum(scenario.applied_events().values())
            ended = scenario.wait_progressing(pipeline, progress, STUCK_S, MAX_WAIT_S - DEADLINE_S)
            late = sum(scenario.applied_events().values()) - at_deadline
        drained_s = time.monotonic() - published
        progress.stop()
        at_end = _sizes(scenario)
        tenth = max(1, len(samples) // 10)
        early, late_rss = max(samples[tenth : 2 * tenth]), max(samples[-tenth:])
        flat = late_rss <= 1.10 * early + 10
        bounded = all(at_end[k] <= 1.10 * at_five[k] for k in at_end)
        sustained = sustained_rate(progress.samples)
        row = scenario.result(
            recovery,
            simulated_minutes=minutes,
            rate=rate,
            late=late,
            wait_ended=ended,
            drained_s=round(drained_s, 1),
            sustained_counts_per_s=round(sustained, 1),
            rss_mb_early=early,
            rss_mb_late=late_rss,
            rss_mb_samples=len(samples),
            sizes_at_5_min=at_five,
            sizes_at_end=at_end,
            progress=progress.samples,
            passed=flat and bounded and late == 0,
            notes=f"{TRAINS} trains, {total:,} counts ({minutes} simulated min) at {rate}/s in "
            f"{published - began:.0f} s; {late:,} applied late (after {DEADLINE_S} s), wait ended "
            f"{ended} {drained_s:.0f} s after the last publish; pipeline RSS {early:.0f} -> "
            f"{late_rss:.0f} MB; largest realtime doc {at_five['realtime_doc_bytes']} -> "
            f"{at_end['realtime_doc_bytes']} B, TrainState {at_five['train_state_bytes']} -> "
            f"{at_end['train_state_bytes']} B",
        )
        return row
    finally:
        progress.halt.set()
        scenario.close()
