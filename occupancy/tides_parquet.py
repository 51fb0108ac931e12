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

from occupancy.tides import FIELDS, KEYS

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


def _sorted(table: str, rows: Iterable[dict]) -> List[dict]:
    return sorted(rows, key=lambda r: tuple(str(r.get(k)) for k in KEYS[table]))


def write_partitioned(root: str, table: str, rows: Iterable[dict], part: str) -> List[str]:
    """Writes `rows` as `<root>/<table>/service_date=<day>/<part>.parquet`, one file per day,
    rows in key order; returns the paths written. An existing file of that name is replaced
    (written beside it, then renamed over it: a reader never sees half a file)."""
    by_day: Dict[str, List[dict]] = {}
    for row in rows:
        by_day.setdefault(row[PARTITION].isoformat(), []).append(row)
    schema = arrow_schema(table, partitioned=True)
    paths = []
    for day, day_rows in sorted(by_day.items()):
        directory = os.path.join(root, table, f"{PARTITION}={day}")
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, f"{part}.parquet")
        columns = {name: [r.get(name) for r in _sorted(table, day_rows)] for name in schema.names}
        temporary = path + ".tmp"
        pq.write_table(pa.Table.from_pydict(columns, schema=schema), temporary)
        os.replace(temporary, path)
        paths.append(path)
    return paths


def read_table(root: str, table: str) -> pa.Table:
    """All of a table's files, the partition column restored (for tests and the docs' analysis)."""
    directory = os.path.join(root, table)
    partitioning = ds.partitioning(pa.schema([pa.field(PARTITION, pa.date32())]), flavor="hive")
    return ds.dataset(directory, format="parquet", partitioning=partitioning).to_table()
