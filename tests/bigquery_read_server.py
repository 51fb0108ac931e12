"""A local BigQuery Storage Read API server for the tests: BigQuery has no emulator.

It serves the real gRPC service (google.cloud.bigquery.storage.v1.BigQueryRead) on a free port,
so the job's client speaks to it as to BigQuery, and keeps what BigQuery documents, written
here from the API's reference rather than from the code under test:

* CreateReadSession: a table that does not exist is NOT_FOUND; a selected field the table
  does not have is INVALID_ARGUMENT; only the ARROW format is served. Of the row restrictions
  (the API's SQL filter) this server takes one form, `<column> < CAST('<YYYY-MM-DD>' AS DATE)`
  (a NULL is not before anything, as in SQL); another is INVALID_ARGUMENT. `sessions` keeps
  each request's (parent, table, row restriction, table_modifiers.snapshot_time or None). The rows are split into
  at most `max_stream_count` streams (2 here at most, so that a read of several streams is
  tested), each named `<session>/streams/<n>`; the session carries the Arrow schema, in which
  DATE is date32, TIMESTAMP timestamp[us, UTC], INT64 int64, FLOAT64 double, BOOL bool,
  STRING string ("Apache Arrow data types", Storage Read API).
* ReadRows: from the request's `offset` (a row of the stream), record batches of at most
  `BATCH_ROWS` rows, each with its `row_count`, the schema on the first response.
* `cut_streams = n`: the next n ReadRows calls send one batch and then fail UNAVAILABLE, as a
  stream cut on the way: the client must resume at the offset it reached.

`calls` counts the calls of each method; `rows_sent` the rows sent in all.
"""

import datetime
import itertools
import re
import threading
from concurrent import futures
from typing import Dict, List

import grpc
import pyarrow as pa
from google.cloud.bigquery_storage_v1 import types

SERVICE = "google.cloud.bigquery.storage.v1.BigQueryRead"
BATCH_ROWS = 100
MAX_STREAMS = 2
ARROW_TYPES = {
    "STRING": pa.string(),
    "INT64": pa.int64(),
    "FLOAT64": pa.float64(),
    "BOOL": pa.bool_(),
    "DATE": pa.date32(),
    "TIMESTAMP": pa.timestamp("us", tz="UTC"),
}


class BigQueryReadServer:
    def __init__(self):
        self.tables: Dict[str, tuple] = {}  # table path -> (columns ({name, type, mode}), rows)
        self.streams: Dict[str, tuple] = {}  # stream name -> (Arrow schema, rows)
        self.sessions: List[tuple] = []
        self.cut_streams = 0
        self.calls: Dict[str, int] = {}
        self.rows_sent = 0
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        handlers = {
            "CreateReadSession": grpc.unary_unary_rpc_method_handler(
                self._create, types.CreateReadSessionRequest.deserialize, types.ReadSession.serialize
            ),
            "ReadRows": grpc.unary_stream_rpc_method_handler(
                self._read, types.ReadRowsRequest.deserialize, types.ReadRowsResponse.serialize
            ),
        }
        self._server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self.host = f"127.0.0.1:{self.port}"

    def start(self) -> "BigQueryReadServer":
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop(grace=None)

    def load(self, resource: dict, rows: List[dict]) -> None:
        """A table as tables.insert describes it (tableReference, schema.fields), holding `rows`."""
        ref = resource["tableReference"]
        path = f"projects/{ref['projectId']}/datasets/{ref['datasetId']}/tables/{ref['tableId']}"
        self.tables[path] = (resource["schema"]["fields"], list(rows))

    def _count(self, method: str) -> None:
        with self._lock:
            self.calls[method] = self.calls.get(method, 0) + 1

    def _create(self, request, context):
        self._count("CreateReadSession")
        session = request.read_session
        if session.table not in self.tables:
            context.abort(grpc.StatusCode.NOT_FOUND, f"Not found: Table {session.table}")
        if session.data_format != types.DataFormat.ARROW:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "this server reads ARROW only")
        columns, rows = self.tables[session.table]
        restriction = session.read_options.row_restriction
        snapshot = session.table_modifiers.snapshot_time if "table_modifiers" in session else None
        self.sessions.append((request.parent, session.table, restriction, snapshot))
        if restriction:
            before = re.fullmatch(r"(\w+) < CAST\('(\d{4}-\d{2}-\d{2})' AS DATE\)", restriction)
            if before is None:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"row restriction not served here: {restriction}")
            column, day = before.group(1), datetime.date.fromisoformat(before.group(2))
            rows = [row for row in rows if row.get(column) is not None and row[column] < day]
        by_name = {c["name"]: c for c in columns}
        selected = list(session.read_options.selected_fields) or list(by_name)
        unknown = [name for name in selected if name not in by_name]
        if unknown:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"Field {unknown[0]} not found in table schema")
        schema = pa.schema(
            [
                pa.field(n, ARROW_TYPES[by_name[n]["type"]], nullable=by_name[n].get("mode") != "REQUIRED")
                for n in selected
            ]
        )
        count = max(1, min(request.max_stream_count or MAX_STREAMS, MAX_STREAMS, len(rows)))
        name = f"projects/local/locations/us/sessions/s{next(self._ids)}"
        out = types.ReadSession(
            name=name,
            table=session.table,
            data_format=types.DataFormat.ARROW,
            arrow_schema=types.ArrowSchema(serialized_schema=schema.serialize().to_pybytes()),
        )
        if rows:
            for k in range(count):
                stream = f"{name}/streams/{k}"
                part = [{n: row.get(n) for n in selected} for row in rows[k::count]]
                self.streams[stream] = (schema, part)
                out.streams.append(types.ReadStream(name=stream))
        return out

    def _read(self, request, context):
        self._count("ReadRows")
        if request.read_stream not in self.streams:
            context.abort(grpc.StatusCode.NOT_FOUND, f"Not found: Stream {request.read_stream}")
        schema, rows = self.streams[request.read_stream]
        with self._lock:
            cut = self.cut_streams > 0
            self.cut_streams -= int(cut)
        for k, start in enumerate(range(request.offset, len(rows), BATCH_ROWS)):
            if cut and k == 1:
                context.abort(grpc.StatusCode.UNAVAILABLE, "the stream was cut")
            batch = pa.RecordBatch.from_pylist(rows[start : start + BATCH_ROWS], schema=schema)
            response = types.ReadRowsResponse(
                row_count=batch.num_rows,
                arrow_record_batch=types.ArrowRecordBatch(
                    serialized_record_batch=batch.serialize().to_pybytes(), row_count=batch.num_rows
                ),
            )
            if k == 0:
                response.arrow_schema = types.ArrowSchema(serialized_schema=schema.serialize().to_pybytes())
            with self._lock:
                self.rows_sent += batch.num_rows
            yield response
