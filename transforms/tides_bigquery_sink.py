"""WriteTidesBigQuery: TIDES rows -> BigQuery tables, exactly once, with the Storage Write API.

Input: {table name: PCollection[row dict]} (transforms.stop_visits), as WriteTidesParquet takes
them. Output: PCollection[dict], dead letters (rows BigQuery refused, with its reason).

The rows are cut into panes as the Parquet files are (transforms.tides_sink: a pane per table,
service date and `--tides_window_s` window, late rows in panes of their own). Each pane is
then written in two steps with a checkpoint between them (docs/design.md, "TIDES tables"):

1. `AppendPane`: a PENDING write stream of its own, the rows appended at explicit offsets,
   the stream finalized. Nothing is visible yet.
2. `CheckpointStreams` (a Reshuffle), then `CommitStreams`: BatchCommitWriteStreams makes the
   stream's rows visible at once.

Exactly once: if step 1 is retried (a worker lost, a bundle failed), the retry appends to a new
stream and only the stream of the attempt the runner committed goes on; the others are never
committed and BigQuery drops them. A retried append (an answer lost) finds its offset
`ALREADY_EXISTS`: the rows landed. A retried commit finds the stream `STREAM_ALREADY_COMMITTED`.

Retry or dead letter, decided here (`BIGQUERY_TRANSIENT`, `adapters.store.PERMANENT`):
* transient (UNAVAILABLE, DEADLINE_EXCEEDED, ABORTED, RESOURCE_EXHAUSTED, INTERNAL, and UNKNOWN
  and CANCELLED, which BigQuery answers for a timeout on its side) is retried with back-off
  up to `retry_deadline_s`, then raised: the runner retries the bundle;
* permanent (INVALID_ARGUMENT, PERMISSION_DENIED, NOT_FOUND, FAILED_PRECONDITION, ...): a row
  BigQuery refuses is a dead letter with BigQuery's reason, the rest of its pane still
  written; a stream it will not create, finalize or commit makes its rows dead letters;
* anything else is raised at once, as a transient error past its deadline: a code neither
  list names is not taken for a reason to drop rows;
* a row that cannot be encoded as the table's columns is a dead letter before any call.

The client is adapters.tides_bigquery.storage_client("write"): BIGQUERY_WRITE_EMULATOR_HOST=
host:port points it at a local server without credentials (tests/bigquery_write_server.py).
"""

import json
import logging
from typing import List, Tuple

import apache_beam as beam
from apache_beam.transforms import window
from google.api_core import exceptions as gexc

from adapters.store import PERMANENT, TRANSIENT, RetryPolicy
from adapters.tides_bigquery import RowEncoder, batches, storage_client
from occupancy import dead_letters, tides, wire
from transforms.tides_sink import panes_by_service_date

_LOGGER = logging.getLogger(__name__)
DEAD_LETTER = "dead_letter"
# google.rpc.Code of an AppendRowsResponse's `error`: the offset was written before.
_ALREADY_EXISTS = 6
# Each call's own time limit. The client library's own retries are off (retry=None on every
# call): its defaults retry for up to 10-20 minutes inside one call; RetryPolicy bounds them.
CALL_TIMEOUT_S = 30.0
BIGQUERY_TRANSIENT = TRANSIENT + (gexc.Unknown, gexc.Cancelled)


class Refused(Exception):
    """BigQuery refused rows for good (not worth retrying): its reason, and which rows (indexes
    into the request's rows; all of them when BigQuery does not say)."""

    def __init__(self, reason: str, rows: List[int] = None):
        super().__init__(reason)
        self.reason, self.rows = reason, rows


def _refused_rows(table: str, rows: List[dict], reason: str) -> List[dict]:
    return [
        dead_letters.record(
            wire.WRITE_FAILED,
            f"BigQuery refused the {table} row: {reason}",
            json.dumps(row, default=str, sort_keys=True),
            {"table": table},
            ":".join(str(row.get(k)) for k in tides.KEYS[table]),
            wire.now_us(),
            "WriteTidesBigQuery",
        )
        for row in rows
    ]


def _policy(deadline_s: float) -> RetryPolicy:
    return RetryPolicy(deadline_s=deadline_s, service="BigQuery", transient=BIGQUERY_TRANSIENT)


class AppendPane(beam.DoFn):
    """(service date, rows of one pane) -> (table path, stream name, rows appended), rows
    written to a finalized PENDING stream (not visible until committed); refused rows ->
    the `dead_letter` output."""

    def __init__(self, table_path: str, table: str, retry_deadline_s: float):
        self._table_path, self._table, self._retry_deadline_s = table_path, table, retry_deadline_s
        self._rows = beam.metrics.Metrics.counter("tides", f"{table}_bigquery_rows_appended")
        self._refused = beam.metrics.Metrics.counter("tides", f"{table}_bigquery_rows_refused")

    def setup(self):
        self._client = storage_client("write")
        self._encoder = RowEncoder(self._table)

    def process(self, element):
        from google.cloud.bigquery_storage_v1 import types

        _, rows = element
        encoded = []
        for row in tides.in_key_order(self._table, rows):
            try:
                encoded.append((self._encoder.encode(row), row))
            except ValueError as e:
                yield from self._dead([row], f"not a row of the table's columns: {e}")
        if not encoded:
            return
        policy = _policy(self._retry_deadline_s)
        try:
            stream = policy.call(
                lambda: self._client.create_write_stream(
                    parent=self._table_path,
                    write_stream=types.WriteStream(type_=types.WriteStream.Type.PENDING),
                    retry=None,
                    timeout=CALL_TIMEOUT_S,
                )
            ).name
        except gexc.GoogleAPIError as e:
            yield from self._dead([row for _, row in encoded], _permanent(e))
            return
        kept = []
        for batch in batches(encoded, size=lambda pair: len(pair[0])):
            appended, refused = self._append(stream, len(kept), batch, policy)
            for row, reason in refused:
                yield from self._dead([row], reason)
            kept += appended
        try:
            policy.call(lambda: self._client.finalize_write_stream(name=stream, retry=None, timeout=CALL_TIMEOUT_S))
        except gexc.GoogleAPIError as e:
            yield from self._dead(kept, _permanent(e))  # never committed: none of them is visible
            return
        self._rows.inc(len(kept))
        yield (self._table_path, stream, kept)

    def _append(self, stream: str, offset: int, batch, policy) -> Tuple[List[dict], List[Tuple[dict, str]]]:
        """Appends `batch` ((encoded, row) pairs) at `offset`: (the rows appended, (row, reason) of
        each refused). A row BigQuery refuses is left out and the rest sent again at the same
        offset (nothing of a refused request is kept), as often as BigQuery refuses rows."""
        refused = []
        while batch:
            try:
                serialized = [data for data, _ in batch]
                policy.call(lambda: self._append_once(stream, offset, serialized))  # noqa: B023 (called here)
                break
            except Refused as e:
                # The indexes are of this request's rows, a batch shorter after each round.
                bad = set(range(len(batch)) if e.rows is None else e.rows)
                refused += [(row, e.reason) for i, (_, row) in enumerate(batch) if i in bad]
                batch = [pair for i, pair in enumerate(batch) if i not in bad]
            except gexc.GoogleAPIError as e:
                reason = _permanent(e)
                refused += [(row, reason) for _, row in batch]
                batch = []
        return [row for _, row in batch], refused

    def _append_once(self, stream: str, offset: int, serialized: List[bytes]) -> None:
        from google.cloud.bigquery_storage_v1 import types

        request = types.AppendRowsRequest(
            write_stream=stream,
            offset=offset,
            proto_rows=types.AppendRowsRequest.ProtoData(
                writer_schema=types.ProtoSchema(proto_descriptor=self._encoder.descriptor),
                rows=types.ProtoRows(serialized_rows=serialized),
            ),
        )
        # BigQuery routes an AppendRows stream by this header (as the library's AppendRowsStream sends it).
        route = (("x-goog-request-params", f"write_stream={stream}"),)
        try:
            answers = self._client.append_rows(iter([request]), retry=None, timeout=CALL_TIMEOUT_S, metadata=route)
            response = next(iter(answers))
        except gexc.AlreadyExists:
            return  # a retry of a request that landed: its rows are at this offset
        except StopIteration:
            # The connection closed before the answer came: whether the rows landed is
            # unknown; the retry at the same offset finds out (ALREADY_EXISTS if they did).
            raise gexc.ServiceUnavailable("AppendRows ended without an answer") from None
        if response.row_errors:
            raise Refused("; ".join(e.message for e in response.row_errors), [e.index for e in response.row_errors])
        if response.error.code == _ALREADY_EXISTS:
            return
        if response.error.code:
            error = gexc.from_grpc_status(response.error.code, response.error.message)
            if isinstance(error, PERMANENT):
                raise Refused(f"{type(error).__name__}: {response.error.message}")
            raise error  # retried if transient, else raised to the runner (see the module's docstring)

    def _dead(self, rows, reason):
        self._refused.inc(len(rows))
        _LOGGER.error("BigQuery refused %s %s rows: %s", len(rows), self._table, reason)
        for record in _refused_rows(self._table, rows, reason):
            yield beam.pvalue.TaggedOutput(DEAD_LETTER, record)


def _permanent(error: gexc.GoogleAPIError) -> str:
    """The reason of an error not worth retrying; any other is raised again (a transient one's
    retries are over: the runner retries the bundle)."""
    if not isinstance(error, PERMANENT):
        raise error
    return f"{type(error).__name__}: {getattr(error, 'message', error)}"


class CommitStreams(beam.DoFn):
    """(table path, stream name, rows) -> nothing: the stream committed (its rows visible);
    rows of a stream BigQuery will not commit -> the `dead_letter` output."""

    def __init__(self, table: str, retry_deadline_s: float):
        self._table, self._retry_deadline_s = table, retry_deadline_s
        self._committed = beam.metrics.Metrics.counter("tides", f"{table}_bigquery_rows_committed")
        self._refused = beam.metrics.Metrics.counter("tides", f"{table}_bigquery_rows_refused")

    def setup(self):
        self._client = storage_client("write")

    def process(self, element):
        from google.cloud.bigquery_storage_v1 import types

        table_path, stream, rows = element
        try:
            response = _policy(self._retry_deadline_s).call(
                lambda: self._client.batch_commit_write_streams(
                    request={"parent": table_path, "write_streams": [stream]}, retry=None, timeout=CALL_TIMEOUT_S
                )
            )
        except gexc.GoogleAPIError as e:
            reason = _permanent(e)
        else:
            already = types.StorageError.StorageErrorCode.STREAM_ALREADY_COMMITTED
            errors = [e for e in response.stream_errors if e.code != already]
            if not errors:
                self._committed.inc(len(rows))
                return
            reason = "; ".join(f"{e.code.name}: {e.error_message}" for e in errors)
        _LOGGER.error("BigQuery did not commit %s rows of %s (stream %s): %s", len(rows), table_path, stream, reason)
        self._refused.inc(len(rows))
        for record in _refused_rows(self._table, rows, reason):
            yield beam.pvalue.TaggedOutput(DEAD_LETTER, record)


class WriteTidesBigQuery(beam.PTransform):
    """{table: PCollection[row]} -> PCollection[dead letter] (see the module's docstring).

    `dataset`: PROJECT.DATASET, whose TIDES tables (occupancy.tides.FIELDS) exist
    (python -m adapters.tides_bigquery create)."""

    def __init__(self, dataset: str, window_s: float, retry_deadline_s: float = 60.0):
        super().__init__()
        project, _, name = dataset.partition(".")
        self._parent = f"projects/{project}/datasets/{name}/tables"
        self._window_s, self._retry_deadline_s = window_s, retry_deadline_s

    def expand(self, tables):
        dead = []
        for table, rows in sorted(tables.items()):
            label = tides.table_label(table)
            appended = panes_by_service_date(rows, label, self._window_s) | f"Append{label}" >> beam.ParDo(
                AppendPane(f"{self._parent}/{table}", table, self._retry_deadline_s)
            ).with_outputs(DEAD_LETTER, main="streams")
            committed = (
                appended.streams
                | f"CheckpointStreams{label}" >> beam.Reshuffle()
                | f"Commit{label}"
                >> beam.ParDo(CommitStreams(table, self._retry_deadline_s)).with_outputs(DEAD_LETTER, main="none")
            )
            dead += [appended[DEAD_LETTER], committed[DEAD_LETTER]]
        # Back in the global window, as every other dead letter the job collects: Flatten keeps
        # the first input's windowing, and these are in the panes' windows.
        return (
            tuple(dead)
            | "TidesRowsRefused" >> beam.Flatten()
            | "TidesRowsRefusedUnwindowed" >> beam.WindowInto(window.GlobalWindows())
        )
