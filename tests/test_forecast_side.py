"""`make run`'s forecast (local/forecast_side.py) around midnight: the runs leaving after it are the
next service day's, seeded on the days after the history's and forecast too, so that a demo
started at 23:40 shows the load ahead of the trains that leave at 00:30."""

import datetime
import os
import subprocess
import zoneinfo

from adapters import tides_parquet
from local.forecast_side import FORECAST_HOURS, LEAD_S, ForecastSide, service_windows
from local.stack import PROJECT
from occupancy.schedule import Schedule
from sim import simulator, timetable

DAY = timetable.DAY_S
ZONE = zoneinfo.ZoneInfo(timetable.TIMEZONE)


def test_the_window_is_cut_at_midnight_into_the_service_days_it_spans():
    ahead = int(FORECAST_HOURS * 3600)
    noon = 12 * 3600
    assert service_windows(noon) == [(0, noon - LEAD_S, noon + ahead)]
    late = DAY - 20 * 60  # 23:40
    assert service_windows(late) == [(0, late - LEAD_S, DAY), (1, 0, late + ahead - DAY)]
    early = 10 * 60  # 00:10: yesterday's last runs are still under way
    assert service_windows(early) == [(-1, DAY + early - LEAD_S, DAY), (0, 0, early + ahead)]


def test_a_demo_started_before_midnight_forecasts_the_runs_leaving_after_it(firestore_client, tmp_path):
    fleet = simulator.DEMO_FLEET[:1]
    now = datetime.datetime.combine(datetime.date(2026, 12, 7), datetime.time(23, 40), tzinfo=ZONE)
    today, tomorrow = now.date(), now.date() + datetime.timedelta(days=1)
    feed = tmp_path / "timetable.zip"
    Schedule.write_zip(feed, timetable.gtfs_files(today - datetime.timedelta(weeks=5), tomorrow, 0))
    side = ForecastSide(tmp_path, fleet, feed, phase_s=0, seed=1)
    root = side.seed_history(now)
    # History after midnight too: the early runs of the days after the seeded ones.
    seeded = tides_parquet.read_table(str(root), "trips_performed").to_pylist()
    after_midnight = [t for t in seeded if t["trip_id_scheduled"] < f"{fleet[0].train_id}-01"]
    assert after_midnight and max(t["service_date"] for t in after_midnight) == today

    done = subprocess.run(side.command(PROJECT, root, now), env=dict(os.environ), capture_output=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = tides_parquet.read_table(str(side.output), "occupancy_forecast").to_pylist()
    ahead = (now + datetime.timedelta(hours=FORECAST_HOURS)).strftime("%H%M")
    leaving_after_midnight = [
        r
        for r in rows
        if r["service_date"] == tomorrow
        and r["trip_id"].startswith(f"{fleet[0].train_id}-")  # the seeded train's; the timetable has more
        and r["trip_id"].rsplit("-", 1)[1] < ahead
    ]
    assert leaving_after_midnight, sorted({(r["service_date"], r["trip_id"]) for r in rows})[:5]
    missing = sorted(
        {(r["trip_id"], r["stop_sequence"]) for r in leaving_after_midnight if r["predicted_load"] is None}
    )
    assert missing == [], (missing, len(leaving_after_midnight))
