"""Tables and JSON the registry CLI prints."""

import json
from typing import List, Optional, Sequence

from occupancy.wire import format_time, to_micros


def table(rows: List[dict], columns: Sequence[tuple]) -> str:
    """An aligned text table; columns are (header, key) pairs, None shown as '-'."""

    def cell(value):
        if value is None:
            return "-"
        if isinstance(value, bool):
            return "yes" if value else "no"
        return str(value)

    cells = [[header for header, _ in columns]] + [[cell(row[key]) for _, key in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    return "\n".join("  ".join(text.ljust(width) for text, width in zip(line, widths)).rstrip() for line in cells)


def print_rows(rows: List[dict], columns: Sequence[tuple], as_json: bool, out) -> None:
    if as_json:
        print(json.dumps(rows, indent=2), file=out)
    else:
        print(table(rows, columns), file=out)
        if not rows:
            print("(none)", file=out)


def timestamp(value) -> Optional[str]:
    """A Firestore timestamp as RFC 3339 UTC with milliseconds, or None."""
    return format_time(to_micros(value)) if hasattr(value, "tzinfo") and value.tzinfo else None
