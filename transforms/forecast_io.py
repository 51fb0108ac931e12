"""The forecast job's reads and writes (docs/forecast.md):

* `ReadTidesTable`: PBegin -> {"rows": PCollection[dict], "dead_letter": PCollection[dict]}:
  the rows of one TIDES table from every CSV or Parquet file the patterns match, read a piece
  at a time (adapters.tides_files) and typed (occupancy.tides_read); a row that cannot be read
  or breaks the table's types is a dead letter naming its file and row, a file that cannot be
  read one naming the file; the rest is used.
* `ReadTidesBigQuery`: the same from a BigQuery table, read with the Storage Read API; a row
  that breaks the table's types is a dead letter naming the stream and row.
* `WriteForecastFiles`: PCollection[forecast row] -> PCollection[path]: one Parquet file per
  service date, `<root>/occupancy_forecast/service_date=<day>/<part>.parquet` (the latest run
  replaces a day's file), its bytes a
  function of its rows (adapters.tides_parquet).
* `at_service_date`: a forecast row at its service date's midnight (UTC), so that the BigQuery
  sink (transforms.tides_bigquery_sink, `DAY_S` windows) writes a service date per pane.
* `WriteForecastDocuments`: PCollection[forecast row] -> PCollection[dead letter]: one Firestore
  document per trip and service date (occupancy.forecast.rows.trip_document), what the API
  serves; transient errors retried (bounded), a document refused for good a dead letter.
"""

import datetime
import json
import logging
import time

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.transforms.window import GlobalWindow, TimestampedValue
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue

from adapters import tides_bigquery_read, tides_files, tides_parquet
from adapters.store import RetryPolicy, commit_documents, make_client
from adapters.tides_bigquery import storage_client
from occupancy import dead_letters, tides, tides_read
from occupancy.forecast import rows as forecast_rows

_LOGGER = logging.getLogger(__name__)
DEAD_LETTER = "dead_letter"
# Every run writes a service date's file under this name: the latest run's forecast of a day
# replaces the one before (a reader never sees two forecasts of a departure).
FORECAST_PART = "forecast"
TABLE = forecast_rows.TABLE
DAY_S = 86400


class _TidesRows(beam.DoFn):
    """What the readers of a TIDES table share: its counters, and a dead letter (tides_invalid)
    of what is not a row of it, naming where it was read."""

    def __init__(self, table: str, step: str):
        self._table, self._step = table, step
        self._columns = [field.name for field in tides.FIELDS[table]]
        self._rows = beam.metrics.Metrics.counter("forecast", f"{table}_rows_read")
        self._refused = beam.metrics.Metrics.counter("forecast", f"{table}_rows_refused")

    def _dead(self, source: str, where: str, detail: str, row=None, origin: str = "file"):
        """`source`: the file or stream read; `origin`: what it is ("file", "bigquery_stream")."""
        self._refused.inc()
        payload = json.dumps(row, default=str).encode("utf-8") if row is not None else b""
        return beam.pvalue.TaggedOutput(
            DEAD_LETTER,
            dead_letters.record(
                "tides_invalid",
                f"{source}, {where}: {detail}",
                payload,
                {origin: source, "where": where, "table": self._table},
                None,
                int(time.time() * 1_000_000),
                self._step,
            ),
        )

    def _typed(self, row: dict, source: str, where: str, origin: str = "file"):
        """The row typed (counted as read), or its dead letter naming where it was read."""
        typed, wrong = tides_read.typed_row(self._table, row)
        if typed is None:
            return self._dead(source, where, "; ".join(wrong), row, origin)
        self._rows.inc()
        return typed


class ReadTidesFile(_TidesRows):
    """ReadableFile of `table` -> its typed rows; TaggedOutput(DEAD_LETTER) for what is not one."""

    def process(self, readable):
        path = readable.metadata.path
        number = 0
        try:
            with readable.open() as f:
                for number, row, broken in tides_files.rows_of(f, path, self._columns):
                    if broken is not None:
                        yield self._dead(path, f"row {number}", broken)
                    else:
                        yield self._typed(row, path, f"row {number}")
        except Exception as e:  # noqa: BLE001 - what no reader takes is the file's dead letter
            _LOGGER.warning("Cannot read %s: %s", path, e)
            where = "the file" if number == 0 else f"the file after row {number}"
            yield self._dead(path, where, f"cannot be read as CSV or Parquet: {e}")


class ReadTidesTable(beam.PTransform):
    """See the module's docstring. `patterns`: file patterns (local or gs://, ** for any depth)."""

    def __init__(self, table: str, patterns):
        super().__init__()
        self._table, self._patterns = table, list(patterns)

    def expand(self, pbegin):
        label = tides.table_label(self._table)
        return (
            pbegin
            | f"Patterns{label}" >> beam.Create(self._patterns)
            | f"Match{label}" >> fileio.MatchAll(empty_match_treatment=fileio.EmptyMatchTreatment.ALLOW)
            | f"Open{label}" >> fileio.ReadMatches()
            | f"Read{label}"
            >> beam.ParDo(ReadTidesFile(self._table, f"Read{label}")).with_outputs(DEAD_LETTER, main="rows")
        )


class _OpenTidesSession(beam.DoFn):
    """A table's name -> (its Arrow schema, a stream name) for each stream of a read session."""

    def __init__(self, dataset: str, billing_project: str, before, snapshot):
        self._dataset, self._billing_project = dataset, billing_project
        self._before, self._snapshot = before, snapshot

    def setup(self):
        self._client = storage_client("read")

    def process(self, table: str):
        columns = [field.name for field in tides.FIELDS[table]]
        schema, streams = tides_bigquery_read.open_session(
            self._client, self._billing_project, self._dataset, table, columns, self._before, self._snapshot
        )
        _LOGGER.info("Reading %s.%s in %d streams", self._dataset, table, len(streams))
        for stream in streams:
            yield schema, stream


class ReadTidesStream(_TidesRows):
    """(Arrow schema, stream name) of `table` -> its typed rows; TaggedOutput(DEAD_LETTER) for a
    row that breaks the table's types, naming the table, the stream and the row."""

    def setup(self):
        self._client = storage_client("read")

    def process(self, element):
        schema, stream = element
        for number, row in tides_bigquery_read.rows_of_stream(self._client, stream, schema):
            yield self._typed(row, stream, f"row {number}", origin="bigquery_stream")


class ReadTidesBigQuery(beam.PTransform):
    """PBegin -> {"rows", "dead_letter"}, as ReadTidesTable, of `table` in the BigQuery dataset
    `dataset` (PROJECT.DATASET), read with the Storage Read API (adapters.tides_bigquery_read)
    billed to `billing_project`: a session per table, its streams read in parallel; the rows
    whose service_date is before `before` (a date; None: all), as the table stood at
    `snapshot` (an aware datetime; None: when the session opens). A table that cannot be read
    (not there, no permission, a column missing) fails the job, with BigQuery's reason."""

    def __init__(self, table: str, dataset: str, billing_project: str, before=None, snapshot=None):
        super().__init__()
        self._table, self._dataset, self._billing_project = table, dataset, billing_project
        self._before, self._snapshot = before, snapshot

    def expand(self, pbegin):
        label = tides.table_label(self._table)
        return (
            pbegin
            | f"Table{label}" >> beam.Create([self._table])
            | f"Session{label}"
            >> beam.ParDo(_OpenTidesSession(self._dataset, self._billing_project, self._before, self._snapshot))
            | f"Spread{label}" >> beam.Reshuffle()
            | f"ReadStreams{label}"
            >> beam.ParDo(ReadTidesStream(self._table, f"ReadStreams{label}")).with_outputs(DEAD_LETTER, main="rows")
        )


def patterns(root: str, table: str):
    """Where a table's files lie under a root, in either layout: this project's Hive-partitioned
    Parquet (`<root>/<table>/service_date=<day>/*.parquet`) or one CSV per table, as the TIDES
    samples are (`<root>/<table>.csv`)."""
    root = root.rstrip("/")
    return [f"{root}/{table}/**.parquet", f"{root}/{table}/**.csv", f"{root}/{table}.csv", f"{root}/{table}.parquet"]


class _WriteDay(beam.DoFn):
    def __init__(self, root: str, part: str):
        self._root, self._part = root, part
        self._files = beam.metrics.Metrics.counter("forecast", "files_written")

    def process(self, element):
        from apache_beam.io.filesystems import FileSystems

        day, rows = element
        path = tides_parquet.part_path(self._root, "occupancy_forecast", day, self._part)
        temporary = path + ".tmp"
        with FileSystems.create(temporary) as f:
            f.write(tides_parquet.parquet_bytes("occupancy_forecast", rows))
        FileSystems.rename([temporary], [path])  # a reader never sees half a file
        self._files.inc()
        yield path


class WriteForecastFiles(beam.PTransform):
    """See the module's docstring."""

    def __init__(self, root: str, part: str):
        super().__init__()
        self._root, self._part = root, part

    def expand(self, rows):
        return (
            rows
            | "ByServiceDate" >> beam.Map(lambda row: (row["service_date"].isoformat(), row))
            | "GroupByServiceDate" >> beam.GroupByKey()
            | "WriteForecastDays" >> beam.ParDo(_WriteDay(self._root, self._part))
        )


class _CommitDocuments(beam.DoFn):
    """((trip_id, day), rows) -> dead letters of the documents Firestore refused for good."""

    def __init__(self, project: str, database: str, collection: str):
        self._project, self._database, self._collection = project, database, collection
        self._written = beam.metrics.Metrics.counter("forecast", "documents_written")
        self._failed = beam.metrics.Metrics.counter("forecast", "documents_failed")

    def setup(self):
        self._client = make_client(self._project, self._database)

    def start_bundle(self):
        self._writes = []

    def process(self, element):
        (trip_id, day), trip_rows = element
        document = forecast_rows.trip_document(list(trip_rows))
        self._writes.append((self._collection, forecast_rows.document_id(trip_id, day), document))
        if len(self._writes) >= 400:
            yield from self._commit()

    def finish_bundle(self):
        for record in self._commit():
            yield WindowedValue(record, MIN_TIMESTAMP, [GlobalWindow()])

    def _commit(self):
        writes, self._writes = self._writes, []
        if not writes:
            return []
        failed = commit_documents(self._client, writes, RetryPolicy())
        self._written.inc(len(writes) - len(failed))
        out = []
        for (_, doc_id, document), error in failed:
            self._failed.inc()
            _LOGGER.error("Firestore refused the forecast of %s: %s", document["trip_id"], error)
            payload = json.dumps(document, default=str).encode("utf-8")
            out.append(
                dead_letters.record(
                    "write_failed",
                    f"forecasts/{doc_id}: {error}",
                    payload,
                    {"trip_id": document["trip_id"], "service_date": document["service_date"]},
                    None,
                    int(time.time() * 1_000_000),
                    "WriteForecastDocuments",
                )
            )
        return out


class WriteForecastDocuments(beam.PTransform):
    """See the module's docstring."""

    def __init__(self, project: str, database: str, collection: str):
        super().__init__()
        self._args = (project, database, collection)

    def expand(self, rows):
        return (
            rows
            | "ByTripAndDay" >> beam.Map(lambda row: ((row["trip_id"], row["service_date"].isoformat()), row))
            | "GroupByTripAndDay" >> beam.GroupByKey()
            | "CommitForecasts" >> beam.ParDo(_CommitDocuments(*self._args))
        )


def at_service_date(row: dict) -> TimestampedValue:
    midnight = datetime.datetime.combine(row["service_date"], datetime.time(), datetime.timezone.utc)
    return TimestampedValue(row, midnight.timestamp())
