"""Scenario 8: a long run: an hour of a 50-train fleet's counts, time-compressed, through the
running pipeline.

50 trains x 3 doors, 15 counts a train a minute (45,000 for the hour), published
at 250 a second with event time = publish time (the local runner can go no
faster than the wall clock, and keeps up at this rate), with the trains'
heartbeats every 2 s. Measured while it runs: the pipeline process's resident
memory every 250 messages; at the 5-minute mark and at the end: every train's
realtime document (Firestore's storage size) and the TrainState a job seeds
from it, pickled. The queue a train keeps in Beam state cannot be read from
outside the job: `make bench-scale` measures it over a simulated hour ("Sizing").

Expected: counts exact (0 lost, 0 double), memory flat (the last tenth of the
run within 10 % + 10 MB of the second tenth), per-train sizes at the end within
10 % of the 5-minute mark.
"""
import pickle
import time

from bench.measure import rss_mb
from faults.harness import Scenario
from occupancy import documents

NAME = "long_run"
TRAINS, DOORS, PER_TRAIN_PER_MIN, RATE = 50, 3, 15, 250


def _sizes(scenario) -> dict:
    """Largest realtime document (storage bytes) and seeded TrainState (pickled bytes) over trains."""
    docs = {d.id: d.to_dict() or {} for d in scenario.client.collection("realtime").stream()}
    return {"realtime_doc_bytes": max(documents.storage_size(f"realtime/{t}", d) for t, d in docs.items()),
            "train_state_bytes": max(len(pickle.dumps(documents.state_from_documents(d, None, 1000),
                                                      pickle.HIGHEST_PROTOCOL)) for d in docs.values())}


def run(context, short: bool) -> dict:
    minutes = 10 if short else 60
    total = TRAINS * PER_TRAIN_PER_MIN * minutes
    scenario = Scenario(context, NAME, trains=TRAINS, doors=DOORS, seed=8)
    scenario.heartbeats.interval_s = 2.0
    try:
        pipeline = scenario.start_primed()
        samples, at_five, futures = [], None, []
        began = time.monotonic()
        for i in range(total):
            futures.append(scenario.devices.publish(scenario.devices.make(), wait=False))
            if i % RATE == 0:
                time.sleep(max(0.0, i / RATE - (time.monotonic() - began)))
                samples.append(rss_mb(pipeline.pid))
            if at_five is None and i >= total * 5 / minutes:
                at_five = _sizes(scenario)
        for future in futures:
            future.result(timeout=120)
        published = time.monotonic()
        recovery = scenario.wait_exact(pipeline, timeout_s=300)
        at_end = _sizes(scenario)
        tenth = max(1, len(samples) // 10)
        early, late = max(samples[tenth:2 * tenth]), max(samples[-tenth:])
        flat = late <= 1.10 * early + 10
        bounded = all(at_end[k] <= 1.10 * at_five[k] for k in at_end)
        return scenario.result(
            None if recovery is None else time.monotonic() - published,
            simulated_minutes=minutes, rss_mb_early=early, rss_mb_late=late, rss_mb_samples=len(samples),
            sizes_at_5_min=at_five, sizes_at_end=at_end, passed=flat and bounded,
            notes=f"{TRAINS} trains, {total:,} counts ({minutes} simulated min) in "
                  f"{published - began:.0f} s; pipeline RSS {early:.0f} -> {late:.0f} MB; largest "
                  f"realtime doc {at_five['realtime_doc_bytes']} -> {at_end['realtime_doc_bytes']} B, "
                  f"TrainState {at_five['train_state_bytes']} -> {at_end['train_state_bytes']} B")
    finally:
        scenario.close()
