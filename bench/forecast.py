"""`make forecast`: the forecast's rolling-origin backtest on simulated weeks (docs/forecast.md).

The weeks come from sim/ridership.py's generative model (its own code, not the forecast's).
At each origin (every `--step_weeks` from `--first_week`) the model is fitted on the weeks
before it alone and forecasts the next `--horizon_days`; the baselines are made from the same
weeks: (a) the same weekday last week, (b) the mean of the last 4 same weekdays. Each is
measured on what was then counted, where all three have a forecast: MAE in people and in % of
capacity, the share of GTFS-RT levels right, and (the model's) p10-p90 coverage; and the
simulator's own expectation (what the level and the calendar let anyone expect, without the
day's shocks or its unannounced events) as the best any forecast could do.

Then the forecast job itself on the same weeks (bench/forecast_job.py): stop visits read per
CPU-second, for docs/sizing.md.

Writes bench/forecast.json and bench/forecast.png; prints the table.
"""

import argparse
import datetime
import json
import time
from typing import Dict, List

import numpy as np

from bench import forecast_job
from occupancy import privacy
from occupancy.fleet import Thresholds
from occupancy.forecast import baseline, history, model, same_day
from occupancy.schedule import Schedule
from sim import ridership

METHODS = ("model", "last_week", "weekday_mean", "expected")
LABELS = {
    "model": "model (level x trees, calibrated)",
    "last_week": "(a) same weekday last week",
    "weekday_mean": "(b) mean of 4 same weekdays",
    "expected": "simulator's expectation (best possible)",
}
GOAL_BELOW_B = 0.25
GOAL_COVERAGE = (0.75, 0.85)


def backtest(scenario: ridership.Scenario, first_week: int, step_weeks: int, horizon_days: int) -> dict:
    simulated = ridership.simulate(scenario)
    schedule = Schedule(ridership.gtfs_files(scenario))
    observations, problems = history.observations(simulated.stop_visits, simulated.trips_performed)
    assert not problems, problems[:3]
    counted = {(o.service_date, o.trip_id, o.stop_sequence): o.load for o in observations}
    past = baseline.History(observations)
    thresholds = Thresholds()
    rows: Dict[str, List[float]] = {k: [] for k in ("actual", "horizon", "p10", "p90", *METHODS)}
    fits = []
    trips: Dict[tuple, Dict[int, tuple]] = {}  # (day, trip) -> stop_sequence -> (day-ahead, counted)
    for week in range(first_week, scenario.weeks, step_weeks):
        origin = scenario.start + datetime.timedelta(weeks=week)
        started = time.monotonic()
        fitted = model.Model(observations, schedule, origin)
        fits.append(time.monotonic() - started)
        days = min(horizon_days, (scenario.start + datetime.timedelta(weeks=scenario.weeks) - origin).days)
        slots = [
            s for s in history.slots(schedule, origin, days) if (s.service_date, s.trip_id, s.stop_sequence) in counted
        ]
        predicted = fitted.predict(slots)
        for slot, prediction in zip(slots, predicted):
            a, b = baseline.last_week(past, slot, origin), baseline.weekday_mean(past, slot, origin)
            if prediction is None or a is None or b is None:
                continue
            key = (slot.service_date, slot.trip_id, slot.stop_sequence)
            trips.setdefault(key[:2], {})[slot.stop_sequence] = (prediction.load, counted[key])
            for name, value in (
                ("actual", counted[key]),
                ("horizon", (slot.service_date - origin).days + 1),
                ("p10", prediction.p10),
                ("p90", prediction.p90),
                ("model", prediction.load),
                ("last_week", a),
                ("weekday_mean", b),
                ("expected", simulated.expected[key]),
            ):
                rows[name].append(value)
        print(f"origin {origin}: fitted in {fits[-1]:.1f} s, {len(slots)} slots", flush=True)
    columns = {k: np.array(v, dtype=float) for k, v in rows.items()}
    actual, capacity = columns["actual"], scenario.capacity
    levels = lambda loads: np.array([thresholds.status(x / capacity) for x in loads])  # noqa: E731
    actual_levels = levels(actual)
    table = {}
    for name in METHODS:
        error = np.abs(columns[name] - actual)
        table[name] = {
            "mae_people": round(float(error.mean()), 3),
            "mae_pct_capacity": round(float(100 * error.mean() / capacity), 3),
            "level_accuracy": round(float(np.mean(levels(columns[name]) == actual_levels)), 4),
            "mae_by_horizon_day": [
                round(float(error[columns["horizon"] == h].mean()), 3) for h in range(1, horizon_days + 1)
            ],
        }
    for name in METHODS:
        table[name]["below_b"] = round(1 - table[name]["mae_people"] / table["weekday_mean"]["mae_people"], 4)
    coverage = float(np.mean((actual >= columns["p10"]) & (actual <= columns["p90"])))
    table["model"]["p10_p90_coverage"] = round(coverage, 4)
    return {
        "same_day": _same_day(trips, scenario.capacity),
        "scenario": {k: str(v) for k, v in scenario.__dict__.items()},
        "origins": len(fits),
        "horizon_days": horizon_days,
        "slots_measured": int(actual.size),
        "mean_load": round(float(actual.mean()), 2),
        "fit_s_mean": round(float(np.mean(fits)), 1),
        "table": table,
        "goal": {
            "mae_below_b": GOAL_BELOW_B,
            "coverage": GOAL_COVERAGE,
            "met": table["model"]["below_b"] >= GOAL_BELOW_B and GOAL_COVERAGE[0] <= coverage <= GOAL_COVERAGE[1],
        },
    }


STOPS_AHEAD = (1, 3, 5)


def _same_day(trips: Dict[tuple, Dict[int, tuple]], capacity: int) -> dict:
    """MAE 1, 3 and 5 stops ahead: the same-day forecast (occupancy.forecast.same_day, from the
    load counted as the train left each stop), the same from the load on board alone (today's
    ratio left out, as the API serves it), from the public's sample of it (in the public's 10 %
    steps of `capacity`) and the day-ahead forecast of the same stops."""
    errors = {k: {"same_day": [], "on_board_alone": [], "public_sample": [], "day_ahead": []} for k in STOPS_AHEAD}
    policy = privacy.Policy(seed=b"")
    for stops in trips.values():
        order = sorted(stops)
        forecast = [(s, stops[s][0]) for s in order]
        for j, left in enumerate(order[:-1]):
            seen = [stops[s] for s in order[: j + 1]]
            predicted = dict(same_day.ahead(forecast, left, stops[left][1], seen))
            alone = dict(same_day.ahead(forecast, left, stops[left][1], []))
            sample = capacity * privacy.coarse_ratio(stops[left][1] / capacity, policy)
            public = dict(same_day.ahead(forecast, left, sample, []))
            for k in STOPS_AHEAD:
                if j + k < len(order):
                    target = order[j + k]
                    errors[k]["same_day"].append(abs(predicted[target] - stops[target][1]))
                    errors[k]["on_board_alone"].append(abs(alone[target] - stops[target][1]))
                    errors[k]["public_sample"].append(abs(public[target] - stops[target][1]))
                    errors[k]["day_ahead"].append(abs(stops[target][0] - stops[target][1]))
    return {
        f"{k}_stops_ahead": {name: round(float(np.mean(v)), 3) for name, v in by.items()} | {"n": len(by["same_day"])}
        for k, by in errors.items()
    }


def report(result: dict) -> str:
    lines = [
        f"Backtest: {result['origins']} origins, {result['horizon_days']} days ahead each, "
        f"{result['slots_measured']:,} departures measured (mean load {result['mean_load']}), "
        f"model fitted in {result['fit_s_mean']} s on average",
        "",
        "| forecast | MAE (people) | MAE (% of capacity) | below (b) | GTFS-RT level right | p10-p90 coverage |",
        "|---|---|---|---|---|---|",
    ]
    for name in METHODS:
        row = result["table"][name]
        coverage = f"{100 * row['p10_p90_coverage']:.1f} %" if "p10_p90_coverage" in row else "-"
        lines.append(
            f"| {LABELS[name]} | {row['mae_people']:.2f} | {row['mae_pct_capacity']:.2f} | "
            f"{100 * row['below_b']:.1f} % | {100 * row['level_accuracy']:.1f} % | {coverage} |"
        )
    lines += [
        "",
        "| stops ahead | same day (MAE) | on board alone | public sample | day ahead | departures |",
        "|---|---|---|---|---|---|",
    ]
    for k in STOPS_AHEAD:
        row = result["same_day"][f"{k}_stops_ahead"]
        lines.append(
            f"| {k} | {row['same_day']:.2f} | {row['on_board_alone']:.2f} | {row['public_sample']:.2f} | "
            f"{row['day_ahead']:.2f} | {row['n']:,} |"
        )
    goal = result["goal"]
    lines.append("")
    lines.append(
        f"Goal: MAE {100 * goal['mae_below_b']:.0f} % below (b), coverage {100 * goal['coverage'][0]:.0f}-"
        f"{100 * goal['coverage'][1]:.0f} %: {'met' if goal['met'] else 'NOT met'}"
    )
    return "\n".join(lines)


def plot(result: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    days = range(1, result["horizon_days"] + 1)
    for name in METHODS:
        ax.plot(days, result["table"][name]["mae_by_horizon_day"], marker="o", label=LABELS[name])
    ax.set_xlabel("days ahead")
    ax.set_ylabel("MAE of the departure load (people)")
    ax.set_title("Forecast backtest on simulated weeks (sim/ridership.py)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.forecast", description=__doc__.split("\n\n")[0])
    parser.add_argument("--weeks", type=int, default=ridership.Scenario.weeks)
    parser.add_argument("--seed", type=int, default=ridership.Scenario.seed)
    parser.add_argument("--first_week", type=int, default=8)
    parser.add_argument("--step_weeks", type=int, default=2)
    parser.add_argument("--horizon_days", type=int, default=14)
    parser.add_argument("--output", default="bench/forecast.json")
    parser.add_argument("--plot", default="bench/forecast.png")
    args = parser.parse_args(argv)
    scenario = ridership.Scenario(weeks=args.weeks, seed=args.seed)
    result = backtest(scenario, args.first_week, args.step_weeks, args.horizon_days)
    print(report(result))
    result["job"] = forecast_job.measure(scenario)
    print(forecast_job.report(result["job"]))
    with open(args.output, "w") as f:
        json.dump(result, f, indent=1)
    plot(result, args.plot)
    print(f"wrote {args.output} and {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
