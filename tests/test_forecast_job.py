"""python -m pipeline.forecast end to end on FnApiRunner with four worker processes (its
multi_threading mode corrupts this job's join input now and then: docs/forecast.md): TIDES history as
another tool writes it (one CSV per table, the spec's columns, fields this system does not
know included) and as the occupancy job writes it (Hive-partitioned Parquet), the GTFS feed,
the registry's capacities on the Firestore emulator -> one forecast row per scheduled
departure, dead letters naming the file and row of what breaks the TIDES types; and the same
history read from BigQuery (in-process, a local Storage Read API server)."""

import csv
import datetime
import json
import operator
import pathlib

import apache_beam as beam
import numpy as np
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from adapters import registry, tides_parquet
from occupancy import schedule
from occupancy.forecast import history
from occupancy.forecast import rows as forecast_rows
from pipeline.forecast.build import build_pipeline
from pipeline.forecast.options import ForecastOptions
from sim import ridership
from tests import schedule_feed
from tests.support import PROJECT

SCENARIO = ridership.Scenario(weeks=6, stops=5, seed=5)
START = SCENARIO.start + datetime.timedelta(weeks=6)
# The TIDES columns another producer writes (the spec's names), some this system never fills.
VISIT_COLUMNS = (
    "service_date",
    "trip_id_performed",
    "trip_stop_sequence",
    "scheduled_stop_sequence",
    "pattern_id",
    "vehicle_id",
    "stop_id",
    "timepoint",
    "schedule_departure_time",
    "boarding_1",
    "alighting_1",
    "departure_load",
    "schedule_relationship",
)


def _csv(path: pathlib.Path, columns, rows):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _text(row.get(k)) for k in columns})


def _text(value):
    if value is None:
        return ""
    if isinstance(value, datetime.datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, datetime.date):
        return value.isoformat()
    return str(value)


def test_the_forecast_job_reads_tides_as_written_and_forecasts_every_scheduled_departure(
    firestore_client, bigquery, tmp_path
):
    simulated = ridership.simulate(SCENARIO)
    files = ridership.gtfs_files(SCENARIO)
    # One more route the history never saw: its departures are rows of NO_DATA_AVAILABLE.
    files["routes.txt"] += "l2,a,2,Line Two,2\n"
    files["trips.txt"] += "l2,wd,new-1,0\n"
    files["stop_times.txt"] += "new-1,09:00:00,09:00:00,s00,1\nnew-1,09:10:00,09:10:00,s04,2\n"
    feed = schedule_feed.write(tmp_path / "gtfs.zip", files)
    history_root = tmp_path / "history"
    history_root.mkdir()
    visits = [{**v, "pattern_id": "p1", "timepoint": "true"} for v in simulated.stop_visits]
    visits[10] = {**visits[10], "departure_load": "many"}
    visits[20] = {**visits[20], "service_date": "2026-13-01"}
    _csv(history_root / "stop_visits.csv", VISIT_COLUMNS, visits)
    # trips_performed as the occupancy job writes it: Parquet, one directory per service date.
    tides_parquet.write_partitioned(str(history_root), "trips_performed", simulated.trips_performed, "part-0")
    for train in range(SCENARIO.vehicles - 1):  # one train without a capacity: no level for its trips
        registry.set_train(firestore_client, "trains", f"u{train:02d}", SCENARIO.capacity, f"U {train}")

    out = tmp_path / "forecast"
    options = PipelineOptions(
        [
            f"--tides_input={history_root}",
            f"--gtfs_static={feed}",
            f"--forecast_start={START}",
            "--forecast_days=7",
            f"--forecast_output={out}",
            f"--firestore_project={PROJECT}",
            "--forecast_bigquery=demo-occupancy.tides",
        ],
        direct_running_mode="multi_processing",
        direct_num_workers=4,
    )
    p = beam.Pipeline(runner=FnApiRunner(), options=options)
    build_pipeline(p, options.view_as(ForecastOptions))
    p.run().wait_until_finish()

    rows = tides_parquet.read_table(str(out), "occupancy_forecast").to_pylist()
    feed_schedule = schedule.Schedule(files)
    scheduled = {(s.service_date, s.trip_id, s.stop_sequence) for s in history.slots(feed_schedule, START, 7)}
    assert {(r["service_date"], r["trip_id"], r["stop_sequence"]) for r in rows} == scheduled
    assert len(rows) == len(scheduled)  # one row each
    # The same rows in BigQuery (tests/bigquery_write_server.py), each once, a committed stream a day.
    key = operator.itemgetter("service_date", "trip_id", "stop_sequence")
    in_bigquery = bigquery.committed["projects/demo-occupancy/datasets/tides/tables/occupancy_forecast"]
    assert sorted(in_bigquery, key=key) == sorted(rows, key=key)
    assert len(bigquery.streams) == 7 and all(s.committed for s in bigquery.streams.values())
    assert sorted({p.name for p in (out / "occupancy_forecast").iterdir()}) == [
        f"service_date={START + datetime.timedelta(days=d)}" for d in range(7)
    ]
    unseen = [r for r in rows if r["trip_id"] == "new-1"]
    assert unseen and all(r["predicted_load"] is None and r["occupancy_status"] == "NO_DATA_AVAILABLE" for r in unseen)
    known = [r for r in rows if r["trip_id"] != "new-1"]
    assert all(r["predicted_load_p10"] <= r["predicted_load"] <= r["predicted_load_p90"] for r in known)
    assert {r["history_days"] for r in known} == {42}
    assert {r["model"] for r in rows} == {"level-hgb"}
    assert {r["forecast_start"] for r in rows} == {START}
    # The last train's trips have no capacity in the registry: no percentage, no level, a load.
    latest = {}
    for trip in simulated.trips_performed:
        if trip["service_date"] < START:
            latest[trip["trip_id_scheduled"]] = trip["vehicle_id"]
    without = {t for t, v in latest.items() if v == f"u{SCENARIO.vehicles - 1:02d}"}
    assert without
    for r in known:
        if r["trip_id"] in without:
            assert (r["occupancy_percentage"], r["occupancy_status"]) == (None, None)
        else:
            assert abs(r["occupancy_percentage"] - 100 * r["predicted_load"] / SCENARIO.capacity) <= 1
            assert r["occupancy_status"] not in (None, "NO_DATA_AVAILABLE")
    # Near what the simulator expected on those days (which the job never saw).
    expected = ridership.simulate(ridership.Scenario(weeks=7, stops=SCENARIO.stops, seed=SCENARIO.seed)).expected
    pairs = [(r["predicted_load"], expected.get((r["service_date"], r["trip_id"], r["stop_sequence"]))) for r in known]
    errors = [abs(p - e) for p, e in pairs if e is not None]
    loads = [e for _, e in pairs if e is not None]
    assert len(errors) > 0.9 * len(known)
    assert np.mean(errors) < 0.2 * np.mean(loads)
    # What breaks the TIDES types is a dead letter naming its file and row; the rest was used.
    dead = [json.loads(line) for f in (out / "dead_letters").glob("*.jsonl") for line in f.read_text().splitlines()]
    assert sorted((d["attributes"]["where"], d["detail"].split(": ", 1)[1]) for d in dead) == [
        ("row 12", "departure_load: 'many' is not of type integer"),
        ("row 22", "service_date: '2026-13-01' is not of type date"),
    ]
    assert all(d["attributes"]["file"] == str(history_root / "stop_visits.csv") for d in dead)
    # What the API serves: a document per trip and service date, its stops in order, as the rows.
    documents = {d.id: d.to_dict() for d in firestore_client.collection("forecasts").stream()}
    assert len(documents) == len({(r["trip_id"], r["service_date"]) for r in rows})
    some = known[0]
    document = documents[forecast_rows.document_id(some["trip_id"], some["service_date"].isoformat())]
    trip_rows = sorted(
        (r for r in rows if (r["trip_id"], r["service_date"]) == (some["trip_id"], some["service_date"])),
        key=lambda r: r["stop_sequence"],
    )
    assert [s["predicted_load"] for s in document["stops"]] == [r["predicted_load"] for r in trip_rows]
    assert [s["stop_sequence"] for s in document["stops"]] == list(range(1, SCENARIO.stops + 1))


def test_the_forecast_job_reads_its_history_from_the_tides_tables_in_bigquery(bigquery_read, tmp_path):
    """--tides_bigquery, the dataset the occupancy job writes its TIDES tables to: read with the
    Storage Read API (tests/bigquery_read_server.py), the same forecast as from the same rows in
    Parquet files."""
    from adapters import tides_bigquery

    simulated = ridership.simulate(SCENARIO)
    files = ridership.gtfs_files(SCENARIO)
    feed = schedule_feed.write(tmp_path / "gtfs.zip", files)
    for table in ("stop_visits", "trips_performed"):
        bigquery_read.load(tides_bigquery.table_resource("demo-occupancy", "tides", table), getattr(simulated, table))
        tides_parquet.write_partitioned(str(tmp_path / "history"), table, getattr(simulated, table), "part-0")

    def forecast(source: str, out: pathlib.Path) -> list:
        common = [f"--gtfs_static={feed}", f"--forecast_start={START}", "--forecast_days=2", "--forecast_collection="]
        options = PipelineOptions([source, f"--forecast_output={out}", *common])
        p = beam.Pipeline(runner=FnApiRunner(), options=options)
        build_pipeline(p, options.view_as(ForecastOptions))
        p.run().wait_until_finish()
        rows = tides_parquet.read_table(str(out), "occupancy_forecast").to_pylist()
        return sorted(rows, key=operator.itemgetter("service_date", "trip_id", "stop_sequence"))

    rows = forecast("--tides_bigquery=demo-occupancy.tides", tmp_path / "from_bigquery")
    assert bigquery_read.rows_sent == len(simulated.stop_visits) + len(simulated.trips_performed)
    # Billed to the dataset's project (no --project), the rows before the first day forecast, both
    # tables as they stood at one moment.
    (parent, _, restriction, snapshot), (*same, other) = bigquery_read.sessions
    assert (parent, restriction) == ("projects/demo-occupancy", f"service_date < CAST('{START}' AS DATE)")
    assert same[0] == parent and other == snapshot and snapshot is not None
    scheduled = {
        (s.service_date, s.trip_id, s.stop_sequence) for s in history.slots(schedule.Schedule(files), START, 2)
    }
    assert sorted((r["service_date"], r["trip_id"], r["stop_sequence"]) for r in rows) == sorted(scheduled)
    assert {(r["model"], r["history_days"]) for r in rows} == {("level-hgb", 42)}
    assert rows == forecast(f"--tides_input={tmp_path / 'history'}", tmp_path / "from_files")
