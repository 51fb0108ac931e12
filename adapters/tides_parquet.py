"""TIDES tables as Parquet files that DuckDB, pandas or BigQuery read (docs/design.md, "TIDES
tables"): one directory per table, Hive-partitioned by service date,

    <root>/stop_visits/service_date=2026-12-03/<part>.parquet

so that a reader filters a day by its directory and a day's files are replaced as a whole.
The Arrow schema is made from occupancy.tides.FIELDS: each field nullable unless TIDES
requires it, times as microseconds UTC, dates as dates.

A file's bytes depend only on its rows and their order (no write time, no random name),
so that a replay of the same counts writes the same files.
"""

import os
from typing import Dict, Iterable, List

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from occupancy.tides import FIELDS, in_key_order

PARTITION = "service_date"
_ARROW = {
    "string": pa.string(),
    "integer": pa.int64(),
    "number": pa.float64(),
    "boolean": pa.bool_(),
    "date": pa.date32(),
    "datetime": pa.timestamp("us", tz="UTC"),
}


def arrow_schema(table: str, partitioned: bool = False) -> pa.Schema:
    """The table's Arrow schema; without the partition column when `partitioned` (it is the
    directory's name there)."""
    return pa.schema(
        [
            pa.field(f.name, _ARROW[f.type], nullable=not f.required)
            for f in FIELDS[table]
            if not (partitioned and f.name == PARTITION)
        ]
    )


def part_path(root: str, table: str, day: str, part: str) -> str:
    """Where a file of `table`'s rows of service date `day` (YYYY-MM-DD) named `part` goes.

    Args:
        root: the directory (or URL prefix) the tables' directories are in; a trailing "/" is dropped.
        table: the table's name (a key of occupancy.tides.FIELDS).
        day: the service date, YYYY-MM-DD.
        part: the file's name without `.parquet`.

    Returns:
        `<root>/<table>/service_date=<day>/<part>.parquet`, joined with "/".
    """
    return "/".join((root.rstrip("/"), table, f"{PARTITION}={day}", f"{part}.parquet"))


def parquet_bytes(table: str, rows: Iterable[dict]) -> bytes:
    """One day's rows of `table` as a Parquet file (without the partition column), in key order."""
    schema = arrow_schema(table, partitioned=True)
    ordered = in_key_order(table, rows)
    columns = {name: [r.get(name) for r in ordered] for name in schema.names}
    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pydict(columns, schema=schema), sink)
    return sink.getvalue().to_pybytes()


def write_partitioned(root: str, table: str, rows: Iterable[dict], part: str) -> List[str]:
    """Writes `rows` to local files, `part_path` for each service date; returns the paths. An
    existing file of that name is replaced (written beside it, then renamed over it: a reader
    never sees half a file).

    Args:
        root: the local directory the tables' directories are in (made as needed).
        table: the table's name (a key of occupancy.tides.FIELDS).
        rows: the table's rows, each with its `service_date` a datetime.date.
        part: the files' name without `.parquet`, the same in every day's directory.

    Returns:
        The paths written, one per service date, in date order.
    """
    by_day: Dict[str, List[dict]] = {}
    for row in rows:
        by_day.setdefault(row[PARTITION].isoformat(), []).append(row)
    paths = []
    for day, day_rows in sorted(by_day.items()):
        path = part_path(root, table, day, part)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path + ".tmp", "wb") as f:
            f.write(parquet_bytes(table, day_rows))
        os.replace(path + ".tmp", path)
        paths.append(path)
    return paths


def read_table(root: str, table: str) -> pa.Table:
    """All of a table's files, the partition column restored (for tests and the docs' analysis)."""
    directory = os.path.join(root, table)
    partitioning = ds.partitioning(pa.schema([pa.field(PARTITION, pa.date32())]), flavor="hive")
    return ds.dataset(directory, format="parquet", partitioning=partitioning).to_table()
