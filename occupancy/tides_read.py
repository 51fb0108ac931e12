"""TIDES rows as other tools write them -> rows as occupancy.tides types them, or why not.

CSV gives every value as text: dates as YYYY-MM-DD, times as ISO 8601 with their offset,
integers, numbers, booleans as `true`/`false` (Frictionless's defaults). Parquet gives values
typed already. Either way the fields this system does not know (TIDES has more: ramps,
fares, locations) are left out, the spec's missing values ("", "NA", "NaN") are None, and what
is left must pass occupancy.tides.problems.
"""

import datetime
from typing import List, Optional, Tuple

from occupancy.tides import FIELDS, problems

MISSING = ("", "NA", "NaN")
_TRUE, _FALSE = ("true", "True", "TRUE", "1"), ("false", "False", "FALSE", "0")


def _value(kind: str, text: str):
    if kind == "string":
        return text
    if kind == "integer":
        value = int(text)
        if not -(2**63) <= value < 2**63:  # what Parquet and BigQuery hold
            raise ValueError(text)
        return value
    if kind == "number":
        return float(text)
    if kind == "boolean":
        if text in _TRUE or text in _FALSE:
            return text in _TRUE
        raise ValueError(text)
    if kind == "date":
        return datetime.date.fromisoformat(text)
    if kind == "datetime":
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    raise ValueError(kind)


def typed_row(table: str, row: dict) -> Tuple[Optional[dict], List[str]]:
    """(the row typed, []) or (None, what is wrong with it)."""
    out, wrong, failed = {}, [], set()
    for field in FIELDS[table]:
        value = row.get(field.name)
        if isinstance(value, str):
            value = value.strip()
            if value in MISSING:
                value = None
            else:
                try:
                    value = _value(field.type, value)
                except ValueError:
                    wrong.append(f"{field.name}: {value[:40]!r} is not of type {field.type}")
                    failed.add(field.name)
                    continue
        elif isinstance(value, datetime.datetime) and field.type == "date":
            value = value.date()
        elif isinstance(value, float) and value != value:  # NaN: Parquet's missing number
            value = None
        out[field.name] = value
    wrong += [p for p in problems(table, out) if p.split(" ", 1)[0] not in failed]
    return (None, wrong) if wrong else (out, [])
