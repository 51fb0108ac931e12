"""The job's TIDES branch (pipeline.build, --tides_output): signed door counts of a train on its
scheduled trip -> stop_visits and passenger_events Parquet files, against the Firestore
emulator, on FnApiRunner with four bundle processors as Dataflow runs it (and the same rows in
BigQuery, --tides_bigquery, on tests/bigquery_write_server.py), and the same files from a run
in one."""

import datetime
import pathlib
from zoneinfo import ZoneInfo

import apache_beam as beam
from apache_beam.io.gcp.pubsub import PubsubMessage
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from adapters import registry, tides_parquet
from bench import fn_api, harness
from local.stack import PROJECT
from occupancy import tides, wire
from pipeline.options import OccupancyOptions
from sim.keyring import Keyring
from tests import schedule_feed

KEYS = Keyring()
ZURICH = ZoneInfo("Europe/Zurich")
S = 1_000_000
DAY = datetime.date(2026, 12, 3)  # a weekday: r1 runs (tests/schedule_feed.py)
DOORS = ("sv1-car1-door1", "sv1-car2-door1", "sv1-car3-door1")
# (local time of the first count, [(door, delta), ...]): train 2001 on r1, stops a to d.
STOPS = [
    ("08:00:10", [(0, 3), (1, 2), (2, 4), (0, 1)]),
    ("08:11:00", [(1, -1), (2, 2)]),
    # c (08:20): nobody gets on or off
    ("08:31:30", [(0, -4), (1, -3), (2, -4)]),
]
EXPECTED = [("a", 1, 10, 0, 10), ("b", 2, 2, 1, 11), ("c", 3, 0, 0, 11), ("d", 4, 0, 11, 0)]


def local_us(hh_mm_ss: str) -> int:
    h, m, s = map(int, hh_mm_ss.split(":"))
    return int(datetime.datetime(2026, 12, 3, h, m, s, tzinfo=ZURICH).timestamp() * S)


def _messages(client):
    registry.set_train(client, "trains", "sv1", 300, train_number="2001")
    for device in DOORS:
        registry.register_device(client, "devices", device, "sv1")
    KEYS.register(client, "devices", list(DOORS))
    messages, seqs = [], {}
    for first, counts in STOPS:
        for k, (door, delta) in enumerate(counts):
            device = DOORS[door]
            seqs[device] = seqs.get(device, 0) + 1
            payload, attributes = wire.encode_event(device, delta, local_us(first) + k * 4 * S, seqs[device])
            messages.append(PubsubMessage(KEYS.sign(device, payload), attributes, message_id=str(len(messages))))
    return messages


def _run(path, out_dir, feed, *args, **runner_options):
    options = OccupancyOptions(
        [
            f"--firestore_project={PROJECT}",
            f"--tides_output={out_dir}",
            f"--gtfs_static={feed}",
            "--timezone=Europe/Zurich",
            *args,
        ]
    )
    p = beam.Pipeline(runner=FnApiRunner(), options=PipelineOptions([], **runner_options))
    harness.build_pipeline(p, path, options)
    p.run().wait_until_finish()


def _files(root: pathlib.Path):
    return {str(f.relative_to(root)): f.read_bytes() for f in sorted(root.rglob("*.parquet"))}


def _key(table):
    return lambda row: tuple(str(row[k]) for k in tides.KEYS[table])


def test_the_job_writes_a_stop_visit_per_stop_and_an_event_per_count(firestore_client, bigquery, tmp_path):
    messages = _messages(firestore_client)
    path = harness.save_messages(messages, str(tmp_path))
    feed = schedule_feed.write(tmp_path / "gtfs.zip", schedule_feed.WITH_STOPS)
    four, one = tmp_path / "four", tmp_path / "one"
    with fn_api.no_state_cache():  # as Dataflow; FnApiRunner's cache is wrong across workers
        _run(
            path,
            four,
            feed,
            "--tides_bigquery=demo-occupancy.tides",
            direct_running_mode="multi_threading",
            direct_num_workers=4,
        )

    visits = sorted(
        tides_parquet.read_table(str(four), "stop_visits").to_pylist(), key=lambda r: r["trip_stop_sequence"]
    )
    assert [
        (v["stop_id"], v["trip_stop_sequence"], v["boarding_1"], v["alighting_1"], v["departure_load"]) for v in visits
    ] == EXPECTED
    assert {v["trip_id_performed"] for v in visits} == {"2026-12-03:r1:sv1"}
    assert {v["service_date"] for v in visits} == {DAY}
    assert visits[0]["actual_arrival_time"] == datetime.datetime.fromtimestamp(
        local_us("08:00:10") / S, datetime.timezone.utc
    )
    events = tides_parquet.read_table(str(four), "passenger_events").to_pylist()
    assert len(events) == sum(len(counts) for _, counts in STOPS)
    assert sum(e["event_count"] for e in events if e["event_type"] == tides.BOARDED) == 12
    assert {(e["stop_id"], e["trip_stop_sequence"]) for e in events} == {("a", 1), ("b", 2), ("d", 4)}
    [trip] = tides_parquet.read_table(str(four), "trips_performed").to_pylist()
    assert (trip["trip_id_performed"], trip["trip_id_scheduled"], trip["vehicle_id"]) == (
        "2026-12-03:r1:sv1",
        "r1",
        "sv1",
    )
    tables = (("stop_visits", visits), ("passenger_events", events), ("trips_performed", [trip]))
    for table, rows in tables:
        assert [tides.problems(table, r) for r in rows] == [[]] * len(rows)
    # BigQuery (tests/bigquery_write_server.py) got the same rows, each once, every stream committed.
    for table, rows in tables:
        in_bigquery = bigquery.committed[f"projects/demo-occupancy/datasets/tides/tables/{table}"]
        assert sorted(in_bigquery, key=_key(table)) == sorted(rows, key=_key(table))
    assert bigquery.streams and all(s.committed for s in bigquery.streams.values())
    realtime = firestore_client.collection("realtime").document("sv1").get().to_dict()
    assert realtime["current_value"] == 0  # the Firestore documents as ever

    # One bundle processor, the state in memory: the very same files, names and bytes.
    firestore_client.recursive_delete(firestore_client.collection("realtime"))
    firestore_client.recursive_delete(firestore_client.collection("history"))
    _run(path, one, feed)
    # 3 windows of 5 minutes for 2 tables, and the trip performed in its first window
    assert _files(one) == _files(four) and len(_files(four)) == 7


def test_rows_bigquery_refuses_are_dead_letters_and_the_rest_is_written(firestore_client, bigquery, tmp_path):
    """The passenger_events table missing (not created, or dropped): each of its rows is a dead
    letter in Firestore with BigQuery's reason, while stop_visits and Firestore go on."""
    del bigquery.tables["projects/demo-occupancy/datasets/tides/tables/passenger_events"]
    messages = _messages(firestore_client)
    path = harness.save_messages(messages, str(tmp_path))
    feed = schedule_feed.write(tmp_path / "gtfs.zip", schedule_feed.WITH_STOPS)
    with fn_api.no_state_cache():
        _run(
            path,
            tmp_path / "files",
            feed,
            "--tides_bigquery=demo-occupancy.tides",
            direct_running_mode="multi_threading",
            direct_num_workers=4,
        )

    dead = [d.to_dict() for d in firestore_client.collection("dead_letters").stream()]
    events = tides_parquet.read_table(str(tmp_path / "files"), "passenger_events").to_pylist()
    assert sorted(d["message_id"] for d in dead) == sorted(e["passenger_event_id"] for e in events)
    assert len(dead) == sum(len(counts) for _, counts in STOPS)
    assert {d["reason"] for d in dead} == {wire.WRITE_FAILED}
    assert all("NotFound" in d["detail"] and "passenger_events" in d["detail"] for d in dead)
    visits = bigquery.committed["projects/demo-occupancy/datasets/tides/tables/stop_visits"]
    assert len(visits) == len(EXPECTED)
    assert firestore_client.collection("realtime").document("sv1").get().to_dict()["current_value"] == 0
