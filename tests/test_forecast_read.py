"""The forecast job's reader of TIDES files written by other tools (transforms/forecast_io.py
ReadTidesTable): a value that breaks a row makes that row a dead letter naming its file and
row, and the rest of the file is used, whatever broke it (the CSV module, the text's encoding,
a Parquet column's conversion); columns the job does not read are not converted."""

import datetime
import json

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from transforms.forecast_io import DEAD_LETTER, ReadTidesTable

HEADER = "service_date,trip_id_performed,trip_stop_sequence,stop_id,departure_load\n"


def good(n: int, day: str = "2026-12-01") -> str:
    return f"{day},trip{n},{n},s{n},{10 * n}\n"


def run(pattern: str, expected_trips, expected_dead):
    """Reads stop_visits files: the trip of each row read, (where, detail) of each dead letter."""
    with TestPipeline(runner="BundleBasedDirectRunner") as p:
        out = p | ReadTidesTable("stop_visits", [pattern])
        assert_that(out.rows | beam.Map(lambda r: r["trip_id_performed"]), equal_to(expected_trips), label="Rows")
        dead = out[DEAD_LETTER] | beam.Map(lambda d: (d["attributes"]["where"], d["detail"].split(": ", 1)[1][:80]))
        assert_that(dead, equal_to(expected_dead), label="Dead")


def test_a_csv_row_the_csv_module_or_utf_8_cannot_read_is_its_own_dead_letter(tmp_path):
    """A field past the csv module's limit, or a byte that is not UTF-8, made the whole file
    one dead letter: in the one-CSV-per-table layout, the whole history."""
    path = tmp_path / "stop_visits.csv"
    huge = "2026-12-01,trip-huge,9,s9," + "1" * 200_000 + "\n"
    path.write_bytes((HEADER + good(1) + huge + good(2)).encode() + b"2026-12-01,trip\xff,3,s3,30\n" + good(4).encode())
    run(
        str(path),
        ["trip1", "trip2", "trip4"],
        [
            ("row 3", "cannot be read as CSV: field larger than field limit (131072)"),
            ("row 5", "not UTF-8 text"),
        ],
    )


def test_a_parquet_value_that_does_not_convert_is_its_rows_dead_letter_and_unread_columns_are_not_read(tmp_path):
    """A timestamp[ns] not on a whole microsecond in one row, and a date past Python's in a
    column the job does not read, each made the whole file one dead letter."""
    ns = pa.array(
        [1_796_000_000_000_000_000, 1_796_000_000_000_000_001, 1_796_000_000_000_001_000], pa.timestamp("ns", tz="UTC")
    )
    table = pa.table(
        {
            "service_date": pa.array([datetime.date(2026, 12, 1)] * 3),
            "trip_id_performed": ["p1", "p2", "p3"],
            "trip_stop_sequence": [1, 2, 3],
            "departure_load": [10, 20, 30],
            "actual_departure_time": ns,
            "a_column_of_another_tool": pa.array([2_147_483_000] * 3, pa.date32()),  # year 5,881,580
        }
    )
    pq.write_table(table, tmp_path / "stop_visits.parquet")
    run(
        str(tmp_path / "stop_visits.parquet"),
        ["p1", "p3"],
        [("row 2", "actual_departure_time: cannot be read: Nanosecond resolution temporal type 17960")],
    )


def test_a_file_no_reader_takes_is_one_dead_letter_naming_it(tmp_path):
    path = tmp_path / "stop_visits.parquet"
    path.write_bytes(b"PAR1 not really")
    with TestPipeline(runner="BundleBasedDirectRunner") as p:
        out = p | ReadTidesTable("stop_visits", [str(path)])
        dead = out[DEAD_LETTER] | beam.Map(lambda d: (d["attributes"]["where"], json.dumps(d["attributes"]["file"])))
        assert_that(dead, equal_to([("the file", json.dumps(str(path)))]))


def test_a_gzipped_csv_given_as_a_pattern_is_read(tmp_path):
    """--stop_visits takes any pattern: Beam opens a `.csv.gz` decompressed, as a stream the
    CSV reader must take."""
    import gzip

    path = tmp_path / "visits.csv.gz"
    path.write_bytes(gzip.compress((HEADER + good(1) + good(2)).encode()))
    run(str(path), ["trip1", "trip2"], [])
