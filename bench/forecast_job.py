"""The forecast job's throughput, for `make forecast` (docs/sizing.md, "The forecast job").

Runs `pipeline.forecast` on FnApiRunner (one worker, in memory) over the simulated line's weeks
written as the occupancy job writes TIDES (Hive-partitioned Parquet), and measures the process's
CPU time (every thread: the runner, its worker and scikit-learn's) and the wall time. The
figure for sizing is stop visits read per CPU-second: each route's model is fitted on one
worker, so a job's CPU grows with the visits it reads.
"""

import datetime
import pathlib
import resource
import tempfile
import time

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from adapters import tides_parquet
from occupancy.schedule import Schedule
from pipeline.forecast.build import build_pipeline
from pipeline.forecast.options import ForecastOptions
from sim import ridership


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(scenario: ridership.Scenario, forecast_days: int = 14) -> dict:
    """Stop visits read, forecast rows written, CPU and wall seconds of one run."""
    simulated = ridership.simulate(scenario)
    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(tmp)
        feed = Schedule.write_zip(root / "gtfs.zip", ridership.gtfs_files(scenario))
        tides_parquet.write_partitioned(str(root / "tides"), "stop_visits", simulated.stop_visits, "part-0")
        tides_parquet.write_partitioned(str(root / "tides"), "trips_performed", simulated.trips_performed, "part-0")
        start = scenario.start + datetime.timedelta(weeks=scenario.weeks)
        options = PipelineOptions(
            [
                f"--tides_input={root / 'tides'}",
                f"--gtfs_static={feed}",
                f"--forecast_start={start}",
                f"--forecast_days={forecast_days}",
                f"--forecast_output={root / 'out'}",
                "--forecast_collection=",
            ]
        )
        cpu, wall = _cpu_s(), time.monotonic()
        p = beam.Pipeline(runner=FnApiRunner(), options=options)
        build_pipeline(p, options.view_as(ForecastOptions))
        p.run().wait_until_finish()
        cpu, wall = _cpu_s() - cpu, time.monotonic() - wall
        written = tides_parquet.read_table(str(root / "out"), "occupancy_forecast").num_rows
    visits = len(simulated.stop_visits)
    return {
        "stop_visits_read": visits,
        "trips_performed_read": len(simulated.trips_performed),
        "forecast_rows_written": written,
        "cpu_s": round(cpu, 1),
        "wall_s": round(wall, 1),
        "visits_per_cpu_s": round(visits / cpu),
    }


def report(job: dict) -> str:
    return (
        f"Forecast job (FnApiRunner, one worker): {job['stop_visits_read']:,} stop visits read, "
        f"{job['forecast_rows_written']:,} rows written in {job['wall_s']} s, {job['cpu_s']} CPU-s: "
        f"{job['visits_per_cpu_s']:,} stop visits per CPU-second"
    )
