"""A local BigQuery Storage Write API server for the tests: BigQuery has no emulator.

It serves the real gRPC service (google.cloud.bigquery.storage.v1.BigQueryWrite) on a free
port, so the job's client speaks to it exactly as to BigQuery, and keeps what BigQuery
documents, written here from the API's reference rather than from the code under test:

* PENDING streams: appended rows are invisible until BatchCommitWriteStreams, which needs
  the stream finalized; committing a stream again is STREAM_ALREADY_COMMITTED.
* AppendRows needs the header `x-goog-request-params: write_stream=<its stream>`.
* Offsets: a request at an offset already written answers ALREADY_EXISTS, one beyond the
  end OUT_OF_RANGE; nothing of a failed request is kept.
* Rows are decoded with the writer schema the client sends (its DescriptorProto), field by
  field against the table's columns: an unknown field fails the request (INVALID_ARGUMENT,
  SCHEMA_MISMATCH_EXTRA_FIELDS), a proto type the column does not take too, a REQUIRED
  column missing fails that row (row_errors). DATE is int32 days since 1970-01-01,
  TIMESTAMP int64 microseconds since the epoch ("Supported protocol buffer data types").

* A request may carry 10 MB at most (the API's quota page); a larger one is INVALID_ARGUMENT.

What BigQuery may do and the tests make it do:
* `lose_answers[method] = n`: the next n calls of a method are carried out and then answered
  UNAVAILABLE, as when an answer is lost on the way back;
* `refuse[method] = code`: every call of it is answered with that error, nothing done (as a
  permission BigQuery checks first);
* `append_errors`: google.rpc codes, each answering one AppendRows request in the response's
  `error` (in-stream), nothing kept;
* `row_errors_at_most = n`: a response names at most n of a request's bad rows (the API does
  not promise to name every one at once): the client must send the rest again, and is told
  of the next bad row by its index in the shorter request.

`calls` counts the answers of each method; `append_streams` counts the AppendRows streams
opened (the client library's own retries open more of them).
"""

import datetime
import itertools
import threading
from concurrent import futures
from typing import Dict, List

import grpc
from google.cloud.bigquery_storage_v1 import types
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, timestamp_pb2
from google.rpc import code_pb2, status_pb2

SERVICE = "google.cloud.bigquery.storage.v1.BigQueryWrite"
MAX_REQUEST_BYTES = 10 * 1000 * 1000
_F = descriptor_pb2.FieldDescriptorProto
# Column type -> the proto field types BigQuery converts to it (the API's reference table).
ACCEPTS = {
    "STRING": {_F.TYPE_STRING},
    "INT64": {_F.TYPE_INT64, _F.TYPE_INT32, _F.TYPE_UINT32, _F.TYPE_SINT64, _F.TYPE_SFIXED64},
    "FLOAT64": {_F.TYPE_DOUBLE, _F.TYPE_FLOAT},
    "BOOL": {_F.TYPE_BOOL},
    "DATE": {_F.TYPE_INT32, _F.TYPE_INT64},
    "TIMESTAMP": {_F.TYPE_INT64},
}
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def _value(column_type: str, value):
    if column_type == "DATE":
        return datetime.date(1970, 1, 1) + datetime.timedelta(days=value)
    if column_type == "TIMESTAMP":
        return _EPOCH + datetime.timedelta(microseconds=value)
    return value


class _Stream:
    def __init__(self, name: str, table: str):
        self.name, self.table = name, table
        self.rows: List[dict] = []
        self.finalized = self.committed = False


class BigQueryWriteServer:
    def __init__(self):
        self.tables: Dict[str, List[dict]] = {}  # table path -> columns ({name, type, mode})
        self.committed: Dict[str, List[dict]] = {}  # table path -> rows visible
        self.streams: Dict[str, _Stream] = {}
        self.lose_answers: Dict[str, int] = {}
        self.refuse: Dict[str, grpc.StatusCode] = {}
        self.append_errors: List[int] = []
        self.row_errors_at_most = None
        self.calls: Dict[str, int] = {}
        self.append_streams = 0
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        # gRPC's own limit (4 MiB by default) above BigQuery's, which _append holds.
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=8),
            options=[("grpc.max_receive_message_length", 4 * MAX_REQUEST_BYTES)],
        )
        handlers = {
            "CreateWriteStream": grpc.unary_unary_rpc_method_handler(
                self._create, types.CreateWriteStreamRequest.deserialize, types.WriteStream.serialize
            ),
            "AppendRows": grpc.stream_stream_rpc_method_handler(
                self._append, types.AppendRowsRequest.deserialize, types.AppendRowsResponse.serialize
            ),
            "FinalizeWriteStream": grpc.unary_unary_rpc_method_handler(
                self._finalize,
                types.FinalizeWriteStreamRequest.deserialize,
                types.FinalizeWriteStreamResponse.serialize,
            ),
            "BatchCommitWriteStreams": grpc.unary_unary_rpc_method_handler(
                self._commit,
                types.BatchCommitWriteStreamsRequest.deserialize,
                types.BatchCommitWriteStreamsResponse.serialize,
            ),
        }
        self._server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self.host = f"127.0.0.1:{self.port}"

    def start(self) -> "BigQueryWriteServer":
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop(grace=None)

    def create_table(self, resource: dict) -> None:
        """A table as tables.insert takes it (REST `Table` resource)."""
        ref = resource["tableReference"]
        path = f"projects/{ref['projectId']}/datasets/{ref['datasetId']}/tables/{ref['tableId']}"
        self.tables[path] = resource["schema"]["fields"]
        self.committed[path] = []

    # ---- the service ----------------------------------------------------------------------

    def _answer(self, method: str, context, response):
        with self._lock:
            self.calls[method] = self.calls.get(method, 0) + 1
            lost = self.lose_answers.get(method, 0)
            if lost:
                self.lose_answers[method] = lost - 1
        if lost:
            context.abort(grpc.StatusCode.UNAVAILABLE, f"{method}: connection reset (the test lost the answer)")
        return response

    def _refuse(self, method: str, context) -> None:
        if method in self.refuse:
            with self._lock:
                self.calls[method] = self.calls.get(method, 0) + 1
            context.abort(self.refuse[method], f"{method}: refused by the test")

    def _create(self, request, context):
        self._refuse("CreateWriteStream", context)
        if request.parent not in self.tables:
            context.abort(grpc.StatusCode.NOT_FOUND, f"Not found: Table {request.parent}")
        if request.write_stream.type_ != types.WriteStream.Type.PENDING:
            context.abort(grpc.StatusCode.UNIMPLEMENTED, "this server has PENDING streams only")
        with self._lock:
            name = f"{request.parent}/streams/s{next(self._ids)}"
            self.streams[name] = _Stream(name, request.parent)
        return self._answer(
            "CreateWriteStream", context, types.WriteStream(name=name, type_=request.write_stream.type_)
        )

    def _append(self, requests, context):
        with self._lock:
            self.append_streams += 1
        decode = None
        # The client library adds an empty one of its own: any of them may name the stream.
        routes = [value for key, value in context.invocation_metadata() if key == "x-goog-request-params"]
        for request in requests:
            if f"write_stream={request.write_stream}" not in routes:
                # BigQuery routes the connection to the stream's region by this header.
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"x-goog-request-params are {routes!r}")
            stream = self.streams.get(request.write_stream)
            if stream is None:
                context.abort(grpc.StatusCode.NOT_FOUND, f"Not found: Stream {request.write_stream}")
            if request.proto_rows.writer_schema.proto_descriptor.name:
                decode = self._decoder(stream.table, request.proto_rows.writer_schema.proto_descriptor)
            if isinstance(decode, str):
                yield self._answer("AppendRows", context, _error(code_pb2.INVALID_ARGUMENT, decode))
                continue
            with self._lock:
                end = len(stream.rows)
                offset = request.offset if "offset" in request else end
                injected = self.append_errors.pop(0) if self.append_errors else None
                if injected is not None:
                    response = _error(injected, "injected by the test")
                elif types.AppendRowsRequest.pb(request).ByteSize() > MAX_REQUEST_BYTES:
                    response = _error(code_pb2.INVALID_ARGUMENT, f"AppendRows request larger than {MAX_REQUEST_BYTES}")
                elif stream.finalized:
                    response = _error(code_pb2.INVALID_ARGUMENT, f"Stream {stream.name} is finalized")
                elif offset < end:
                    response = _error(code_pb2.ALREADY_EXISTS, f"Offset {offset} already exists (end {end})")
                elif offset > end:
                    response = _error(code_pb2.OUT_OF_RANGE, f"Offset {offset} is beyond the end {end}")
                else:
                    rows, row_errors = [], []
                    for index, data in enumerate(request.proto_rows.rows.serialized_rows):
                        row, problem = decode(data)
                        if problem:
                            row_errors.append(types.RowError(index=index, code=1, message=problem))
                        rows.append(row)
                    if row_errors:
                        row_errors = row_errors[: self.row_errors_at_most]
                        response = types.AppendRowsResponse(
                            error=status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message="row errors"),
                            row_errors=row_errors,
                        )
                    else:
                        stream.rows += rows
                        response = types.AppendRowsResponse(
                            append_result=types.AppendRowsResponse.AppendResult(offset=offset)
                        )
            yield self._answer("AppendRows", context, response)

    def _decoder(self, table: str, descriptor):
        """A function of serialized row -> (row, problem), or a string saying why the schema is
        refused."""
        columns = {c["name"]: c for c in self.tables[table]}
        message = descriptor  # a descriptor_pb2.DescriptorProto
        for field in message.field:
            column = columns.get(field.name)
            if column is None:
                return f"SCHEMA_MISMATCH_EXTRA_FIELDS: {field.name} is not a column of {table}"
            if field.type not in ACCEPTS[column["type"]]:
                return f"{field.name}: proto type {field.type} cannot be written to a {column['type']} column"
        pool = descriptor_pool.DescriptorPool()
        pool.Add(descriptor_pb2.FileDescriptorProto(name="writer_schema.proto", message_type=[message]))
        cls = message_factory.GetMessageClass(pool.FindMessageTypeByName(message.name))

        def decode(data: bytes):
            parsed = cls.FromString(data)
            row = {name: None for name in columns}
            for field in message.field:
                if parsed.HasField(field.name):
                    row[field.name] = _value(columns[field.name]["type"], getattr(parsed, field.name))
            missing = [n for n, c in columns.items() if c.get("mode") == "REQUIRED" and row[n] is None]
            return row, (f"missing required field(s) {', '.join(missing)}" if missing else "")

        return decode

    def _finalize(self, request, context):
        self._refuse("FinalizeWriteStream", context)
        stream = self.streams.get(request.name)
        if stream is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"Not found: Stream {request.name}")
        stream.finalized = True
        return self._answer(
            "FinalizeWriteStream", context, types.FinalizeWriteStreamResponse(row_count=len(stream.rows))
        )

    def _commit(self, request, context):
        self._refuse("BatchCommitWriteStreams", context)
        errors = []
        code = types.StorageError.StorageErrorCode
        with self._lock:
            for name in request.write_streams:
                stream = self.streams.get(name)
                if stream is None:
                    errors.append(
                        types.StorageError(code=code.STREAM_NOT_FOUND, entity=name, error_message="not found")
                    )
                elif stream.committed:
                    errors.append(types.StorageError(code=code.STREAM_ALREADY_COMMITTED, entity=name))
                elif not stream.finalized:
                    errors.append(
                        types.StorageError(code=code.INVALID_STREAM_STATE, entity=name, error_message="not finalized")
                    )
            if not errors:  # all or nothing
                for name in request.write_streams:
                    stream = self.streams[name]
                    stream.committed = True
                    self.committed[stream.table] += stream.rows
        response = types.BatchCommitWriteStreamsResponse(stream_errors=errors)
        if not errors:
            response.commit_time = timestamp_pb2.Timestamp(seconds=int(datetime.datetime.now().timestamp()))
        return self._answer("BatchCommitWriteStreams", context, response)


def _error(code: int, message: str):
    return types.AppendRowsResponse(error=status_pb2.Status(code=code, message=message))
