"""The TIDES tables from the running job (python -m pipeline.main on the local runner, against
the emulators): a train's stops show in the Parquet files while it runs, each visit once."""

import time

from adapters import tides_parquet
from local import stack
from occupancy import tides
from tests.support import Heartbeats, register, tail, warm_up


def _rows(root, table):
    try:
        return tides_parquet.read_table(str(root), table).to_pylist()
    except FileNotFoundError:
        return []


def test_stop_visits_are_written_while_the_job_runs(local_stack, tmp_path):
    client, fleet, start = local_stack
    register(client, {"ta": ["a1", "a2", "hb-a"]})
    root = tmp_path / "tides"
    process = start("pipeline.log", f"--tides_output={root}", "--tides_window_s=5", "--stop_gap_s=3")
    warm_up(client, fleet, process, ["hb-a"])
    beats = Heartbeats(fleet, ["hb-a"], interval_s=0.5)  # the watermark moves on with them
    beats.start()
    try:
        # On no trip, a train's visits are numbered within its day (UTC here): both stops on one.
        to_midnight = 86_400 - time.time() % 86_400
        if to_midnight < 30:
            time.sleep(to_midnight + 1)
        fleet.publish("a1", 3)
        fleet.publish("a2", 2)
        time.sleep(5)  # the train leaves; at the next stop:
        fleet.publish("a1", -1)
        fleet.publish("a2", 4)
        stack.wait_for(
            lambda: process.poll() is not None or len(_rows(root, "stop_visits")) >= 2,
            90,
            what="two stop visits in the Parquet files",
        )
        assert process.poll() is None, f"pipeline died:\n{tail(process)}"
    finally:
        beats.stop()
    visits = sorted(_rows(root, "stop_visits"), key=lambda r: r["trip_stop_sequence"])
    assert [(v["trip_stop_sequence"], v["boarding_1"], v["alighting_1"], v["departure_load"]) for v in visits] == [
        (1, 5, 0, 5),
        (2, 4, 1, 8),
    ]
    assert {(v["schedule_relationship"], v["stop_id"]) for v in visits} == {(tides.ADDED, None)}  # no schedule
    events = _rows(root, "passenger_events")
    assert sorted((e["device_id"], e["event_type"], e["event_count"]) for e in events) == [
        ("a1", tides.ALIGHTED, 1),
        ("a1", tides.BOARDED, 3),
        ("a2", tides.BOARDED, 2),
        ("a2", tides.BOARDED, 4),
    ]
    for table, rows in (("stop_visits", visits), ("passenger_events", events)):
        assert [tides.problems(table, r) for r in rows] == [[]] * len(rows)
