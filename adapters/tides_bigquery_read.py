"""TIDES tables read from BigQuery with the Storage Read API (the forecast job's
`--tides_bigquery`; docs/forecast.md, "The job").

* `open_session(client, billing_project, dataset, table, columns, before, snapshot)`: a read
  session of the table's `columns` in Arrow, of the rows before a service date (BigQuery skips
  the later day partitions), as the table stood at `snapshot` (the same moment for every table
  a job reads): (its schema, as bytes, and its streams' names). BigQuery splits the rows into
  up to `max_streams` streams, each read on its own (a worker each).
* `rows_of_stream(client, stream, schema)`: (row number in the stream, the row as a dict of
  Python values: DATE a date, TIMESTAMP an aware datetime in UTC, INT64 an int). The client
  library resumes a stream cut on the way at the last row it received, so no row is read
  twice or lost.

The client is adapters.tides_bigquery.storage_client("read"): BIGQUERY_READ_EMULATOR_HOST=
host:port points it at a local server without credentials (tests/bigquery_read_server.py).
"""

import datetime
from typing import Iterator, List, Optional, Sequence, Tuple

# Streams asked of BigQuery per table (it may give fewer): enough for the workers of a job.
MAX_STREAMS = 16


def table_path(dataset: str, table: str) -> str:
    """projects/P/datasets/D/tables/T of `table` in `dataset` (PROJECT.DATASET)."""
    project, _, name = dataset.rpartition(".")
    return f"projects/{project}/datasets/{name}/tables/{table}"


def before_restriction(day: datetime.date) -> str:
    """The row restriction of the rows whose service_date is before `day` (the Storage Read
    API's SQL filter: a column compared with a CAST literal)."""
    return f"service_date < CAST('{day.isoformat()}' AS DATE)"


def open_session(
    client,
    billing_project: str,
    dataset: str,
    table: str,
    columns: Sequence[str],
    before: Optional[datetime.date] = None,
    snapshot: Optional[datetime.datetime] = None,
    max_streams: int = MAX_STREAMS,
) -> Tuple[bytes, List[str]]:
    """(the Arrow schema, serialized; the names of the session's streams) of a read of `columns`
    of `table` in `dataset`, billed to `billing_project`: the rows whose service_date is before
    `before` (None: all), as the table stood at `snapshot` (timezone-aware; None: now). Raises
    google.api_core's errors: NotFound (no such table), InvalidArgument (a column the table
    does not have), PermissionDenied."""
    from google.cloud.bigquery_storage_v1 import types

    session = types.ReadSession(
        table=table_path(dataset, table),
        data_format=types.DataFormat.ARROW,
        read_options=types.ReadSession.TableReadOptions(
            selected_fields=list(columns), row_restriction=before_restriction(before) if before else ""
        ),
    )
    if snapshot is not None:
        session.table_modifiers = types.ReadSession.TableModifiers(snapshot_time=snapshot)
    session = client.create_read_session(
        parent=f"projects/{billing_project}", read_session=session, max_stream_count=max_streams
    )
    return session.arrow_schema.serialized_schema, [stream.name for stream in session.streams]


def rows_of_stream(client, stream: str, schema: bytes) -> Iterator[Tuple[int, dict]]:
    """(row number from 1, the row) of each row of a session's stream, in order: each response's
    Arrow record batch read with the session's schema."""
    import pyarrow as pa

    arrow_schema = pa.ipc.read_schema(pa.py_buffer(schema))
    number = 0
    for response in client.read_rows(stream):
        batch = pa.ipc.read_record_batch(
            pa.py_buffer(response.arrow_record_batch.serialized_record_batch), arrow_schema
        )
        for row in batch.to_pylist():
            number += 1
            yield number, row
