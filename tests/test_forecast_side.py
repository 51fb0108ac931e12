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


def _at(day: str, hh_mm: str) -> datetime.datetime:
    return datetime.datetime.combine(datetime.date.fromisoformat(day), datetime.time.fromisoformat(hh_mm), ZONE)


def test_the_window_is_cut_at_midnight_into_the_service_days_it_spans():
    ahead = int(FORECAST_HOURS * 3600)
    noon = 12 * 3600
    assert service_windows(_at("2026-12-07", "12:00")) == [(0, noon - LEAD_S, noon + ahead)]
    late = DAY - 20 * 60  # 23:40
    assert service_windows(_at("2026-12-07", "23:40")) == [(0, late - LEAD_S, DAY), (1, 0, late + ahead - DAY)]
    early = 10 * 60  # 00:10: yesterday's last runs are still under way
    assert service_windows(_at("2026-12-08", "00:10")) == [(-1, DAY + early - LEAD_S, DAY), (0, 0, early + ahead)]


def test_the_window_counts_gtfs_seconds_on_the_nights_clocks_change():
    """GTFS times count from noon minus 12 h: on the night clocks go forward (Zürich, 2027-03-28,
    02:00 -> 03:00) tomorrow's service day began at 23:00 today, so 23:40 is already 40 minutes
    into it; on the night they go back (2026-10-25) it begins at 01:00."""
    ahead = int(FORECAST_HOURS * 3600)
    forward = service_windows(_at("2027-03-27", "23:40"))
    assert forward == [(0, DAY - 20 * 60 - LEAD_S, DAY), (1, 40 * 60 - LEAD_S, 40 * 60 + ahead)]
    back = service_windows(_at("2026-10-24", "23:40"))
    assert back == [(0, DAY - 20 * 60 - LEAD_S, DAY), (1, 0, ahead - 20 * 60 - 3600)]


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
