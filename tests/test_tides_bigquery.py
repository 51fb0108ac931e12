"""The TIDES tables in BigQuery (adapters/tides_bigquery.py, transforms/tides_bigquery_sink.py):
the table definitions against TIDES and BigQuery's own Table class, and the Storage Write API
sink against a local server of that API (tests/bigquery_write_server.py: BigQuery has no
emulator) that decodes the rows with the writer schema sent and keeps PENDING streams,
offsets and commits as BigQuery documents them. The job with the sink: tests/test_tides_job.py."""

import datetime

import pytest
from google.api_core import exceptions as gexc
from google.cloud import bigquery as bq
from google.rpc import code_pb2

from adapters import tides_bigquery
from occupancy import tides
from tests.tides_spec import TIDES_REQUIRED
from transforms.tides_bigquery_sink import DEAD_LETTER, AppendPane, CommitStreams

UTC = datetime.timezone.utc
DAY = datetime.date(2026, 12, 3)
TABLE = "projects/demo-occupancy/datasets/tides/tables/passenger_events"


def events(n, start=0):
    return [
        {
            "passenger_event_id": f"door{i % 3}:{i}",
            "service_date": DAY,
            "event_timestamp": datetime.datetime(2026, 12, 3, 7, 0, i % 60, 1000 * i, tzinfo=UTC),
            "trip_id_performed": "2026-12-03:r1:sv1",
            "trip_stop_sequence": 1 + i // 10,
            "event_type": tides.BOARDED if i % 2 else tides.ALIGHTED,
            "vehicle_id": "sv1",
            "device_id": f"door{i % 3}",
            "event_count": 1 + i % 4,
        }
        for i in range(start, start + n)
    ]


def as_bigquery_keeps(row, table="passenger_events"):
    return {f.name: row.get(f.name) for f in tides.FIELDS[table]}


def write(pane_rows, table="passenger_events", deadline_s=5.0, path=TABLE):
    """AppendPane then CommitStreams on one pane: (dead letters, the stream element)."""
    append = AppendPane(path, table, deadline_s)
    append.setup()
    out = list(append.process(("2026-12-03", pane_rows)))
    dead = [o.value for o in out if getattr(o, "tag", None) == DEAD_LETTER]
    streams = [o for o in out if getattr(o, "tag", None) is None]
    commit = CommitStreams(table, deadline_s)
    commit.setup()
    for element in streams:
        dead += [o.value for o in commit.process(element)]
    return dead, streams


def test_the_tables_are_tides_partitioned_by_service_date_as_bigquery_reads_them():
    for table, required in TIDES_REQUIRED.items():
        resource = tides_bigquery.table_resource("demo-occupancy", "tides", table)
        parsed = bq.Table.from_api_repr(resource)  # google-cloud-bigquery's own Table
        assert [f.name for f in parsed.schema] == [f.name for f in tides.FIELDS[table]]
        assert {f.name for f in parsed.schema if f.mode == "REQUIRED"} == required
        assert {f.field_type for f in parsed.schema} <= {"STRING", "INT64", "DATE", "TIMESTAMP"}
        assert parsed.time_partitioning.type_ == "DAY" and parsed.time_partitioning.field == "service_date"
        assert parsed.clustering_fields and "service_date" not in parsed.clustering_fields
    visits = {
        f.name: f.field_type
        for f in bq.Table.from_api_repr(tides_bigquery.table_resource("p-123456", "d", "stop_visits")).schema
    }
    assert visits["actual_departure_time"] == "TIMESTAMP" and visits["boarding_1"] == "INT64"


def test_a_pane_is_committed_once_with_every_value_as_sent(bigquery):
    rows = events(25)
    dead, _ = write(rows)
    assert dead == []
    assert sorted(bigquery.committed[TABLE], key=str) == sorted(map(as_bigquery_keeps, rows), key=str)


def test_lost_answers_and_a_retried_bundle_write_each_row_once(bigquery):
    rows = events(12)
    bigquery.lose_answers.update({"AppendRows": 1, "FinalizeWriteStream": 1, "BatchCommitWriteStreams": 1})
    # A bundle that appended and then failed: its stream is never committed.
    first = AppendPane(TABLE, "passenger_events", 5.0)
    first.setup()
    list(first.process(("2026-12-03", rows)))
    assert bigquery.committed[TABLE] == []  # appended, not visible
    dead, [(_, stream, _)] = write(list(reversed(rows)))  # the retry, rows in another order
    assert dead == [] and len(bigquery.committed[TABLE]) == 12
    assert sorted(r["passenger_event_id"] for r in bigquery.committed[TABLE]) == sorted(
        r["passenger_event_id"] for r in rows
    )
    assert [s.committed for s in bigquery.streams.values()] == [False, True]
    assert bigquery.calls["AppendRows"] == 3 and bigquery.calls["BatchCommitWriteStreams"] == 2
    assert bigquery.append_streams == 3  # a stream a request: the library's own retries are off


def test_a_row_bigquery_refuses_is_a_dead_letter_and_the_rest_of_its_pane_is_written(bigquery):
    rows = events(6)
    rows[2] = {**rows[2], "vehicle_id": None}  # REQUIRED
    dead, _ = write(rows)
    assert [d["message_id"] for d in dead] == [rows[2]["passenger_event_id"]]
    assert "missing required field(s) vehicle_id" in dead[0]["detail"] and dead[0]["reason"] == "write_failed"
    assert dead[0]["attributes"] == {"table": "passenger_events"}
    assert len(bigquery.committed[TABLE]) == 5


def test_rows_refused_over_several_rounds_are_each_a_dead_letter_once_and_the_rest_written(bigquery):
    bigquery.row_errors_at_most = 1  # the second bad row is named by its index in the shorter request
    rows = events(8)
    for i in (2, 5):
        rows[i] = {**rows[i], "vehicle_id": None}
    dead, _ = write(rows)
    assert sorted(d["message_id"] for d in dead) == sorted(rows[i]["passenger_event_id"] for i in (2, 5))
    assert sorted(r["passenger_event_id"] for r in bigquery.committed[TABLE]) == sorted(
        r["passenger_event_id"] for i, r in enumerate(rows) if i not in (2, 5)
    )


def test_unknown_and_internal_errors_in_the_stream_are_retried_not_dead_letters(bigquery):
    bigquery.append_errors += [code_pb2.UNKNOWN, code_pb2.INTERNAL, code_pb2.CANCELLED]
    rows = events(5)
    dead, _ = write(rows)
    assert dead == [] and len(bigquery.committed[TABLE]) == 5
    assert bigquery.append_errors == []


def test_a_permanent_error_in_the_stream_makes_the_requests_rows_dead_letters(bigquery):
    bigquery.append_errors.append(code_pb2.PERMISSION_DENIED)
    dead, _ = write(events(4))
    assert len(dead) == 4 and all("PermissionDenied" in d["detail"] for d in dead)
    assert bigquery.committed[TABLE] == []


def test_an_error_neither_transient_nor_permanent_is_raised_for_the_runner_not_dropped(bigquery):
    bigquery.append_errors.append(code_pb2.DATA_LOSS)
    with pytest.raises(gexc.DataLoss):
        write(events(3))
    assert bigquery.committed[TABLE] == []


def test_a_row_that_cannot_be_encoded_is_a_dead_letter_and_the_rest_is_written(bigquery):
    rows = events(4)
    rows[1] = {**rows[1], "event_count": 2.5}
    rows[3] = {**rows[3], "event_count": 2**63}
    dead, _ = write(rows)
    assert sorted(d["message_id"] for d in dead) == sorted(rows[i]["passenger_event_id"] for i in (1, 3))
    assert all("not a row of the table's columns" in d["detail"] for d in dead)
    assert len(bigquery.committed[TABLE]) == 2


def test_a_pane_larger_than_a_request_may_be_goes_in_requests_bigquery_takes(bigquery):
    # 12 MB of rows, over BigQuery's 10 MB a request (the server refuses a larger one).
    rows = [{**row, "trip_id_performed": f"{i:04d}" + "x" * 100_000} for i, row in enumerate(events(120))]
    dead, _ = write(rows)
    assert dead == [] and len(bigquery.committed[TABLE]) == 120
    assert bigquery.calls["AppendRows"] == 2


def test_a_missing_table_makes_every_row_a_dead_letter_with_bigquerys_reason(bigquery):
    missing = "projects/demo-occupancy/datasets/tides/tables/nope"
    dead, streams = write(events(3), path=missing)
    assert streams == [] and len(dead) == 3
    assert all("NotFound" in d["detail"] and "nope" in d["detail"] for d in dead)


def test_transient_errors_past_the_deadline_are_raised_for_the_runner_to_retry(bigquery, caplog):
    bigquery.lose_answers["CreateWriteStream"] = 1000
    with pytest.raises(gexc.ServiceUnavailable):
        write(events(2), deadline_s=1.0)
    assert bigquery.committed[TABLE] == []
    assert 1 < bigquery.calls["CreateWriteStream"] < 20  # retried with back-off, then given up
    assert "transient BigQuery errors" in caplog.text and "Firestore" not in caplog.text


def test_a_big_pane_goes_in_several_requests_at_consecutive_offsets(bigquery, monkeypatch):
    monkeypatch.setattr(tides_bigquery, "MAX_REQUEST_BYTES", 1000)
    rows = events(40)
    encoder = tides_bigquery.RowEncoder("passenger_events")
    assert len(list(tides_bigquery.batches(map(encoder.encode, rows), 1000))) > 3
    dead, _ = write(rows)
    assert dead == [] and len(bigquery.committed[TABLE]) == 40
    assert bigquery.calls["AppendRows"] > 3


def test_encoding_a_timestamp_without_time_zone_is_refused():
    with pytest.raises(ValueError, match="time zone"):
        tides_bigquery.RowEncoder("passenger_events").encode(
            {**events(1)[0], "event_timestamp": datetime.datetime(2026, 12, 3, 7)}
        )


def test_create_makes_the_tables_that_are_missing_and_keeps_those_that_exist():
    class Client:  # google.cloud.bigquery.Client's create_table, on a dataset with stop_visits
        def __init__(self):
            self.made = []

        def create_table(self, table):
            if table.table_id == "stop_visits":
                raise gexc.Conflict("Already Exists: Table p-123456:d.stop_visits")
            self.made.append(table)

    client = Client()
    assert tides_bigquery.create_tables(client, "p-123456", "d") == [
        "occupancy_forecast",
        "passenger_events",
        "trips_performed",
    ]
    for table in client.made:
        assert (table.project, table.dataset_id, table.time_partitioning.field) == ("p-123456", "d", "service_date")


def test_schema_prints_the_tables_and_a_bad_dataset_is_a_usage_error(capsys):
    import json

    assert tides_bigquery.main(["schema", "--dataset", "p-123456.d"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert set(printed) == {*TIDES_REQUIRED, "occupancy_forecast"}
    with pytest.raises(SystemExit) as e:
        tides_bigquery.main(["schema", "--dataset", "tides"])
    assert e.value.code == 2 and "PROJECT.DATASET" in capsys.readouterr().err


@pytest.mark.parametrize("method", ["FinalizeWriteStream", "BatchCommitWriteStreams"])
def test_a_stream_bigquery_will_not_finalize_or_commit_is_dead_letters_not_endless_retries(bigquery, method):
    import grpc

    bigquery.refuse[method] = grpc.StatusCode.PERMISSION_DENIED
    rows = events(4)
    dead, _ = write(rows)
    assert sorted(d["message_id"] for d in dead) == sorted(r["passenger_event_id"] for r in rows)
    assert all("PermissionDenied" in d["detail"] for d in dead)
    assert bigquery.calls[method] == 1  # refused for good: not retried
    assert bigquery.committed[TABLE] == []
