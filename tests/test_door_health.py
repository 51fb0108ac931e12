"""occupancy/door_health.py (pure) and the service-day error model (sim/service_day.py)."""

import datetime
import json
import random
import subprocess
import sys

import pytest

from occupancy import door_health
from sim import service_day
from sim.service_day import DoorError


def trips_of(errors, n_trips, people=150, seed=0):
    """Trips as the pipeline writes them: every rider boards and alights through a random door,
    each door counting through its DoorError."""
    rng = random.Random(seed)
    doors = [f"d{i}" for i in range(len(errors))]
    out = []
    for _ in range(n_trips):
        ins, outs = [0] * len(doors), [0] * len(doors)
        for _ in range(people * len(doors)):
            ins[rng.randrange(len(doors))] += 1
            outs[rng.randrange(len(doors))] += 1
        counts = {}
        for i, device in enumerate(doors):
            if errors[i].dead:
                continue
            counts[device] = {"boarded": 0, "alighted": 0}
            b, a = service_day.observe(rng, errors[i], ins[i], outs[i])
            counts[device] = {"boarded": b, "alighted": a}
        out.append(
            {
                "ons": sum(c["boarded"] for c in counts.values()),
                "offs": sum(c["alighted"] for c in counts.values()),
                "doors": counts,
            }
        )
    return doors, out


def test_a_biased_door_and_a_dead_door_are_flagged_and_healthy_ones_are_not():
    healthy = DoorError(miss=0.02, double=0.01)
    errors = [healthy] * 6 + [DoorError(miss=0.02, double=0.01, bias_in=0.10), DoorError(dead=True)]
    doors, trips = trips_of(errors, 40)
    health = door_health.assess(trips, doors)
    assert door_health.flagged(health) == ["d6", "d7"]
    assert health["d7"].status == door_health.SILENT
    assert health["d6"].status == door_health.BIASED and 0.06 < health["d6"].bias_estimate < 0.14
    assert all(health[d].status == door_health.OK for d in doors[:6])


def test_too_few_crossings_is_insufficient_data_not_a_verdict():
    doors, trips = trips_of([DoorError()] * 4, 1, people=10)
    assert {h.status for h in door_health.assess(trips, doors).values()} == {door_health.INSUFFICIENT}


def test_no_healthy_door_is_flagged_over_many_simulated_trains():
    flagged = 0
    for seed in range(30):
        doors, trips = trips_of([DoorError(miss=0.02, double=0.01)] * 8, 60, seed=seed)
        for n in (3, 20, 60):
            flagged += len(door_health.flagged(door_health.assess(trips[:n], doors)))
    assert flagged == 0


@pytest.mark.parametrize(
    "error,boarded,alighted,expect",
    [
        (DoorError(), 1000, 1000, (1000, 1000)),
        (DoorError(miss=1.0), 50, 50, (0, 0)),
        (DoorError(swap=1.0), 30, 10, (10, 30)),
        (DoorError(double=1.0), 7, 3, (14, 6)),
        (DoorError(bias_in=1.0), 9, 4, (18, 4)),
        (DoorError(bias_in=-1.0), 9, 4, (0, 4)),
    ],
)
def test_observe_applies_each_error(error, boarded, alighted, expect):
    assert service_day.observe(random.Random(1), error, boarded, alighted) == expect


def test_a_service_day_is_empty_at_every_terminus_and_exact_doors_add_up():
    trains = service_day.fleet(2, 4, 200, lambda i, d: DoorError())
    day = service_day.simulate_day(trains, datetime.date(2026, 11, 2), seed=3, first_hour=6, last_hour=10)
    for train in trains:
        truth = day.truth[train.train_id]
        for terminus in day.termini[train.train_id]:
            assert service_day.value_at(truth, terminus) == 0
        assert max(v for _, v in truth) > 0 and len(day.termini[train.train_id]) >= 3
    # Exact doors: the sum of all deltas is zero (everyone who boarded alighted).
    deltas = [json.loads(p)["delta"] for p, a in day.messages if b"terminus" not in p]
    assert sum(deltas) == 0 and sum(b"terminus" in p for p, _ in day.messages) == sum(
        len(t) for t in day.termini.values()
    )


@pytest.mark.emulator
@pytest.mark.timeout(300)
def test_make_accuracy_smoke(tmp_path):
    out = tmp_path / "accuracy.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.accuracy", "--smoke", f"--output={out}"],
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())
    rows = {(r["level"], r["balancing"]): r for r in results["levels"]}
    for row in rows.values():
        assert {"mae_pct_capacity", "max_error_pct_capacity", "drift_at_terminus_mean", "balancing"} <= set(row)
    # Exact doors give the exact numbers: the measurement itself adds no error.
    assert rows[("exact", True)]["mae_pct_capacity"] == 0 and rows[("exact", True)]["max_error_pct_capacity"] == 0
    noisy = rows[("2% missed + 1% double", True)]
    assert noisy["mae_pct_capacity"] > 0 and noisy["messages"] > 100
    assert results["door_health"]["trips_to_flag"]  # the faulty doors are reported on
    assert "MAE" in done.stdout
    assert (tmp_path / "accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # the docs' figure
