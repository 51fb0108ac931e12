"""The forecast job's reader of TIDES tables in BigQuery (transforms/forecast_io.py
ReadTidesBigQuery, adapters/tides_bigquery_read.py), against a local Storage Read API server
(tests/bigquery_read_server.py): the rows it gives are those the file reader gives of the same
rows written as Parquet; a stream cut on the way is resumed where it stopped; a row that breaks
TIDES is a dead letter naming its stream and row; a table that is not there fails the read."""

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from adapters import tides_bigquery, tides_parquet
from sim import ridership
from transforms.forecast_io import DEAD_LETTER, ReadTidesBigQuery, ReadTidesTable, patterns

DATASET = "demo-occupancy.tides"
SCENARIO = ridership.Scenario(weeks=1, stops=5, seed=3)


def _row_key(row: dict) -> tuple:
    return tuple(sorted((k, str(v)) for k, v in row.items()))


def test_bigquery_gives_the_rows_a_parquet_file_of_them_gives_and_a_cut_stream_loses_and_repeats_none(
    bigquery_read, tmp_path
):
    simulated = ridership.simulate(SCENARIO)
    tables = {"stop_visits": simulated.stop_visits, "trips_performed": simulated.trips_performed}
    for table, rows in tables.items():
        tides_parquet.write_partitioned(str(tmp_path), table, rows, "part-0")
        bigquery_read.load(tides_bigquery.table_resource("demo-occupancy", "tides", table), rows)
    assert len(simulated.stop_visits) > 2 * 100  # more than one batch in each of the two streams
    bigquery_read.cut_streams = 1  # the first stream read is cut after its first batch
    with TestPipeline(runner="BundleBasedDirectRunner") as p:
        for table in tables:
            from_files = p | f"Files{table}" >> ReadTidesTable(table, patterns(str(tmp_path), table))
            from_bigquery = p | f"BigQuery{table}" >> ReadTidesBigQuery(table, DATASET, "demo-occupancy")
            assert_that(
                (
                    from_files.rows | f"F{table}" >> beam.Map(lambda r: ("file", _row_key(r))),
                    from_bigquery.rows | f"B{table}" >> beam.Map(lambda r: ("bigquery", _row_key(r))),
                )
                | f"Both{table}" >> beam.Flatten()
                | f"ByRow{table}" >> beam.Map(lambda tagged: (tagged[1], tagged[0]))
                | f"Group{table}" >> beam.GroupByKey()
                | f"Sources{table}" >> beam.MapTuple(lambda _, sources: tuple(sorted(sources))),
                equal_to([("bigquery", "file")] * len(tables[table])),
                label=f"EachRowOnceFromEach{table}",
            )
            assert_that(from_bigquery[DEAD_LETTER], equal_to([]), label=f"NoDeadLetters{table}")
    sent = len(simulated.stop_visits) + len(simulated.trips_performed)
    assert bigquery_read.rows_sent == sent  # the cut stream went on from its offset, not again from its start
    assert bigquery_read.calls == {"CreateReadSession": 2, "ReadRows": 2 + 2 + 1}


def test_a_row_that_breaks_tides_is_a_dead_letter_naming_its_stream_and_row(bigquery_read):
    rows = ridership.simulate(SCENARIO).stop_visits[:6]
    rows[1] = {**rows[1], "boarding_1": -3}
    rows[4] = {**rows[4], "schedule_relationship": "Late"}
    bigquery_read.load(tides_bigquery.table_resource("demo-occupancy", "tides", "stop_visits"), rows)
    with TestPipeline(runner="BundleBasedDirectRunner") as p:
        out = p | ReadTidesBigQuery("stop_visits", DATASET, "demo-occupancy")
        assert_that(out.rows | beam.combiners.Count.Globally(), equal_to([4]), label="Rows")
        dead = out[DEAD_LETTER] | beam.Map(
            lambda d: (d["attributes"]["bigquery_stream"].rsplit("/", 1)[1], d["attributes"]["where"], d["detail"])
        )
        # The server deals the rows to its two streams in turn: the table's 2nd row is stream 1's
        # 1st, its 5th stream 0's 3rd.
        assert_that(
            dead | beam.Map(lambda d: (d[0], d[1], d[2].split(": ", 1)[1])),
            equal_to(
                [
                    ("1", "row 1", "boarding_1: -3 below 0"),
                    (
                        "0",
                        "row 3",
                        "schedule_relationship: 'Late' not one of ('Scheduled', 'Skipped', 'Added', 'Missing')",
                    ),
                ]
            ),
            label="Dead",
        )


def test_only_the_rows_before_a_day_are_read_billed_to_the_project_named_and_an_empty_table_is_none(bigquery_read):
    import datetime

    rows = ridership.simulate(SCENARIO).stop_visits
    day = SCENARIO.start + datetime.timedelta(days=3)
    bigquery_read.load(tides_bigquery.table_resource("demo-occupancy", "tides", "stop_visits"), rows)
    bigquery_read.load(tides_bigquery.table_resource("demo-occupancy", "tides", "trips_performed"), [])
    snapshot = datetime.datetime(2026, 12, 8, 1, 2, 3, tzinfo=datetime.timezone.utc)
    with TestPipeline(runner="BundleBasedDirectRunner") as p:
        visits = p | "Visits" >> ReadTidesBigQuery("stop_visits", DATASET, "billing-project", day, snapshot)
        trips = p | "Trips" >> ReadTidesBigQuery("trips_performed", DATASET, "billing-project", day, snapshot)
        assert_that(
            visits.rows | "Days" >> beam.Map(lambda r: r["service_date"]),
            equal_to([r["service_date"] for r in rows if r["service_date"] < day]),
            label="Before",
        )
        assert_that(trips.rows, equal_to([]), label="Empty")
    assert 0 < bigquery_read.rows_sent < len(rows)
    assert sorted(bigquery_read.sessions) == [
        ("projects/billing-project", f"projects/demo-occupancy/datasets/tides/tables/{table}", restriction, snapshot)
        for table in ("stop_visits", "trips_performed")
        for restriction in [f"service_date < CAST('{day.isoformat()}' AS DATE)"]
    ]


def test_a_table_that_is_not_there_fails_the_read_with_bigquerys_reason(bigquery_read):
    with pytest.raises(Exception, match="Not found: Table projects/demo-occupancy/datasets/tides/tables/stop_visits"):
        with TestPipeline(runner="BundleBasedDirectRunner") as p:
            p | ReadTidesBigQuery("stop_visits", DATASET, "demo-occupancy")
