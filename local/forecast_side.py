"""The forecast in `make run`: weeks of the demo timetable's past service seeded as TIDES files
(sim/timetable_history.py), and the forecast job (python -m pipeline.forecast) run on them in the
background, into the registry's Firestore, where the API serves it: each train's load ahead at its
next stops and a stop's departures, on the dashboard.

Seeded are the runs that leave within LEAD_S before and FORECAST_HOURS after the start, on each of
the HISTORY_DAYS before (the model wants 28 days: 14 to fit and 14 to calibrate its bounds); the
other runs get no forecast (NO_DATA_AVAILABLE), as a trip without history does. A window that
crosses midnight is cut at it (`service_windows`): the runs after it are the next service day's,
seeded on the days after the history's and forecast for tomorrow too.
"""

import datetime
import pathlib
import shutil
import subprocess
import sys
import time
import zoneinfo
from typing import List, Optional, Sequence, Tuple

from adapters import tides_parquet
from local import stack
from local.terminal import relative
from sim import timetable
from sim.simulator import TrainSpec
from sim.timetable_history import History, history

HISTORY_DAYS = 28
FORECAST_HOURS = 1.5
LEAD_S = 1200  # runs that left this long before the start are still under way: seeded too


def service_windows(now: datetime.datetime) -> List[Tuple[int, int, int]]:
    """(service day offset from today, first, end) in GTFS seconds of that service day (from its
    sim.timetable.reference: noon minus 12 h, so that a day when clocks change is right), for each
    of yesterday, today and tomorrow that the window [now - LEAD_S, now + FORECAST_HOURS) falls in."""
    today = now.astimezone(zoneinfo.ZoneInfo(timetable.TIMEZONE)).date()
    out = []
    for offset in (-1, 0, 1):
        at = timetable.service_seconds(now, today + datetime.timedelta(days=offset))
        first, last = max(0, at - LEAD_S), min(timetable.DAY_S, at + int(FORECAST_HOURS * 3600))
        if first < last:
            out.append((offset, first, last))
    return out


class ForecastSide:
    """Seeds the history under `directory`/history and runs the forecast job once."""

    def __init__(
        self, directory: pathlib.Path, fleet: Sequence[TrainSpec], feed: pathlib.Path, phase_s: int, seed: int
    ):
        """`feed`: the timetable as written with sim.timetable.gtfs_files(..., `phase_s`)."""
        self.directory, self.fleet, self.feed, self.phase_s, self.seed = directory, fleet, feed, phase_s, seed
        self.log_path = directory / "forecast.log"
        self.output = directory / "forecast"  # the job's Parquet rows (--forecast_output)
        self.process: Optional[subprocess.Popen] = None
        self.visits = 0
        self.started = self.took_s = None

    def seed_history(self, now: datetime.datetime) -> pathlib.Path:
        """Writes the seeded history (Parquet, as the occupancy job writes TIDES); returns its root."""
        local = now.astimezone(zoneinfo.ZoneInfo(timetable.TIMEZONE))
        days = [local.date() - datetime.timedelta(days=k) for k in range(HISTORY_DAYS, 0, -1)]
        seeded = History([], [])
        for offset, first, end in service_windows(now):
            shifted = [day + datetime.timedelta(days=offset) for day in days]
            part = history(self.fleet, shifted, (first, end), self.seed + offset, phase_s=self.phase_s)
            seeded.stop_visits.extend(part.stop_visits)
            seeded.trips_performed.extend(part.trips_performed)
        root = self.directory / "history"
        shutil.rmtree(root, ignore_errors=True)
        for table in ("stop_visits", "trips_performed"):
            tides_parquet.write_partitioned(str(root), table, getattr(seeded, table), "seeded")
        self.visits = len(seeded.stop_visits)
        return root

    def command(self, project: str, root: pathlib.Path, now: datetime.datetime) -> List[str]:
        """The forecast job's command line: the service days the seeded window falls in."""
        local = now.astimezone(zoneinfo.ZoneInfo(timetable.TIMEZONE))
        offsets = [w[0] for w in service_windows(now)]
        first = local.date() + datetime.timedelta(days=offsets[0])
        return [
            sys.executable,
            "-m",
            "pipeline.forecast",
            "--runner=FnApiRunner",
            f"--project={project}",
            f"--tides_input={root}",
            f"--gtfs_static={self.feed}",
            f"--forecast_start={first.isoformat()}",
            f"--forecast_days={offsets[-1] - offsets[0] + 1}",
            f"--forecast_output={self.output}",
        ]

    def start(self, project: str, env: dict, now: datetime.datetime) -> None:
        root = self.seed_history(now)
        shutil.rmtree(self.output, ignore_errors=True)
        self.log_path.write_bytes(b"")
        self.started = time.monotonic()
        self.process = stack.start_command(
            self.command(project, root, now),
            str(self.log_path),
            # One thread for scikit-learn's fits: beside the running pipeline, OpenMP's threads
            # spinning for each other cost 40 % more CPU (measured) and slowed everything.
            env={**env, "OMP_NUM_THREADS": "1"},
        )

    def status(self) -> str:
        """One line for the demo's table."""
        if self.process is None:
            return "forecast: not started"
        code = self.process.poll()
        if code is None:
            return (
                f"forecast: computing from {HISTORY_DAYS} days of seeded history ({self.visits} stop "
                f"visits; log {relative(self.log_path)})"
            )
        if self.took_s is None:
            self.took_s = time.monotonic() - self.started
        if code == 0:
            return (
                f"forecast: ready (took {self.took_s:.0f} s): each train's next stops and a stop's "
                "departures on the dashboard"
            )
        return f"forecast: failed (exit {code}): see {relative(self.log_path)}"

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            stack.stop_process(self.process)
