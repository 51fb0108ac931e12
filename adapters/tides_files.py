"""TIDES files as other tools write them (CSV or Parquet) -> their rows, one at a time.

`rows_of(f, path, columns)` yields (row number, row, None) for each row it reads, and (row
number, None, what broke it) for a row that cannot be read, so that one bad value costs its
row, never the file: a CSV field past the csv module's limit, bytes that are not UTF-8, a
Parquet value with no Python equivalent (a timestamp in nanoseconds off the microsecond, a date
past year 9999). Only `columns` are read from Parquet (other tools' columns are never
converted), and both formats are read in pieces, not whole. Row numbers are the file's: 2 for a
CSV's first record (under its header), 1 for a Parquet file's first row.

What makes the whole file unreadable (not CSV nor Parquet, a Parquet file naming a column
twice) raises, for the caller to make the file's dead letter.
"""

import csv
import io
import re
from typing import Iterable, Iterator, NamedTuple, Optional, Tuple

_PARTITION = re.compile(r"/service_date=(\d{4}-\d{2}-\d{2})/")
_BATCH_ROWS = 65_536


class _Unread(NamedTuple):
    """A Parquet cell that did not convert, and why."""

    why: str


def rows_of(f, path: str, columns: Iterable[str]) -> Iterator[Tuple[int, Optional[dict], Optional[str]]]:
    """The rows of one file, opened as binary `f` (see the module's docstring)."""
    if path.endswith(".parquet"):
        yield from _parquet_rows(f, path, set(columns))
    else:
        yield from _csv_rows(f)


class _Raw(io.RawIOBase):
    """Any object with read(n) as a stream TextIOWrapper takes (Beam's CompressedFile, for a
    `.csv.gz`, lacks what it asks of a stream)."""

    def __init__(self, f):
        self._f = f

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self._f.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _csv_rows(f) -> Iterator[Tuple[int, Optional[dict], Optional[str]]]:
    text = io.TextIOWrapper(io.BufferedReader(_Raw(f)), encoding="utf-8-sig", errors="surrogateescape", newline="")
    reader = csv.DictReader(text)
    number = 1
    while True:
        number += 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            yield number, None, f"cannot be read as CSV: {e}"
            continue
        if any(_not_utf8(v) for v in (*row.keys(), *row.values())):
            yield number, None, "not UTF-8 text"
            continue
        yield number, row, None


def _not_utf8(value) -> bool:
    """Whether a CSV value held bytes that are not UTF-8 (read as lone surrogates)."""
    if isinstance(value, list):  # fields past the header's
        return any(_not_utf8(v) for v in value)
    return isinstance(value, str) and any("\udc80" <= c <= "\udcff" for c in value)


def _parquet_rows(f, path: str, wanted: set) -> Iterator[Tuple[int, Optional[dict], Optional[str]]]:
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(f)
    names = parquet.schema_arrow.names
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"a Parquet file naming a column more than once: {', '.join(twice)}")
    partition = _PARTITION.search(path)  # a Hive-partitioned file keeps its service date in its directory
    number = 0
    for batch in parquet.iter_batches(batch_size=_BATCH_ROWS, columns=[n for n in names if n in wanted]):
        values = {name: _cells(batch.column(i)) for i, name in enumerate(batch.schema.names)}
        for i in range(batch.num_rows):
            number += 1
            row = {name: cells[i] for name, cells in values.items()}
            bad = [f"{name}: cannot be read: {value.why}" for name, value in row.items() if isinstance(value, _Unread)]
            if bad:
                yield number, None, "; ".join(bad)
                continue
            if partition:
                row.setdefault("service_date", partition.group(1))
            yield number, row, None


def _cells(column) -> list:
    """A column's values as Python's, each cell that does not convert an _Unread."""
    try:
        return column.to_pylist()
    except (ValueError, OverflowError, TypeError, NotImplementedError) as e:
        first = e
    out = []
    for cell in column:
        try:
            out.append(cell.as_py())
        except (ValueError, OverflowError, TypeError, NotImplementedError) as e:
            out.append(_Unread(str(e)[:120] or type(e).__name__))
    if not any(isinstance(v, _Unread) for v in out):
        raise first  # the column failed whole and no cell alone: the file's
    return out
