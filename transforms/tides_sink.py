"""WriteTidesParquet: TIDES rows -> Parquet files, a file per table, service date and window.

Input: {table name: PCollection[row dict]} (transforms.stop_visits). Output: PCollection[str],
the paths written. Rows are put in fixed event-time windows of `window_s` and grouped by
service date; when the watermark passes a window's end its rows are written as
`<root>/<table>/service_date=<day>/<window start>-<pane>.parquet`
(adapters.tides_parquet; `root` local or gs://, any filesystem Beam has). A row that comes
after its window has been written (later than the watermark: rare, as the rows are made by
event-time timers) is written in a later pane's file of the same window, never dropped.

The names come from the data, and the rows of a file are in key order, so a retried bundle
writes the same file again, and a replay of the same counts writes the same files.
"""

import logging

import apache_beam as beam
from apache_beam.transforms import trigger, window
from apache_beam.utils.timestamp import Duration

from adapters import tides_parquet
from occupancy import tides

_LOGGER = logging.getLogger(__name__)
# Rows later than this after their window are still written (in a pane of their own).
ALLOWED_LATENESS_S = 7 * 24 * 3600


class WriteParquetFiles(beam.DoFn):
    """(service date, rows of one window) -> the path of the file written."""

    def __init__(self, root: str, table: str):
        self._root, self._table = root, table
        self._rows = beam.metrics.Metrics.counter("tides", f"{table}_rows")
        self._files = beam.metrics.Metrics.counter("tides", f"{table}_files")

    def process(self, element, win=beam.DoFn.WindowParam, pane=beam.DoFn.PaneInfoParam):
        from apache_beam.io.filesystems import FileSystems

        day, rows = element
        rows = list(rows)
        start = win.start.to_utc_datetime().strftime("%Y%m%dT%H%M%SZ")
        path = tides_parquet.part_path(self._root, self._table, day, f"{start}-{pane.index}")
        data = tides_parquet.parquet_bytes(self._table, rows)
        temporary = path + ".tmp"
        with FileSystems.create(temporary) as f:
            f.write(data)
        FileSystems.rename([temporary], [path])  # a reader never sees half a file
        self._rows.inc(len(rows))
        self._files.inc()
        _LOGGER.info("Wrote %s rows to %s", len(rows), path)
        yield path


def panes_by_service_date(rows, label: str, window_s: float):
    """PCollection[row] -> PCollection[(service date, rows)]: one element per service date,
    `window_s` event-time window and pane (late rows in panes of their own), as both TIDES
    sinks write them. Applied in the caller's composite: `Window<label>`,
    `ByServiceDate<label>`, `Group<label>`."""
    return (
        rows
        | f"Window{label}"
        >> beam.WindowInto(
            window.FixedWindows(window_s),
            trigger=trigger.AfterWatermark(late=trigger.AfterCount(1)),
            accumulation_mode=trigger.AccumulationMode.DISCARDING,
            allowed_lateness=Duration(seconds=ALLOWED_LATENESS_S),
        )
        | f"ByServiceDate{label}" >> beam.Map(lambda row: (row[tides_parquet.PARTITION].isoformat(), row))
        | f"Group{label}" >> beam.GroupByKey()
    )


class WriteTidesParquet(beam.PTransform):
    """{table: PCollection[row]} -> PCollection[path] (see the module's docstring)."""

    def __init__(self, root: str, window_s: float):
        super().__init__()
        self._root, self._window_s = root, window_s

    def expand(self, tables):
        written = []
        for table, rows in sorted(tables.items()):
            label = tides.table_label(table)
            written.append(
                panes_by_service_date(rows, label, self._window_s)
                | f"Write{label}" >> beam.ParDo(WriteParquetFiles(self._root, table))
            )
        return tuple(written) | "TidesFilesWritten" >> beam.Flatten()
