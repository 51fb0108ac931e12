"""The demo's occupancy table (`make run`): plain text, no terminal codes."""

import datetime
from typing import List, NamedTuple, Optional


class Row(NamedTuple):
    train_id: str
    name: str
    value: Optional[int]
    capacity: Optional[int]
    last_updated: Optional[datetime.datetime]
    expected: Optional[int]


def _age(moment: datetime.datetime) -> str:
    seconds = (datetime.datetime.now(datetime.timezone.utc) - moment).total_seconds()
    return f"{max(0, seconds):.0f}s ago"


def _bar(ratio: float, width: int = 10) -> str:
    filled = min(width, int(round(ratio * width)))
    return "#" * filled + "." * (width - filled)


def render(rows: List[Row], footer: List[str], width: int = 0) -> str:
    """The occupancy table as plain text (no terminal codes).

    `width` (a terminal's columns) drops the name, then the bar, to fit; 0 shows all.
    """
    # Without the name the line is 78 characters (67 without the bar).
    name_w = 26 if not width else min(26, width - 80)
    name_w = name_w if name_w >= 6 else 0
    show_bar = not width or width > 78
    header = (
        f"{'TRAIN':8} "
        + (f"{'NAME':{name_w}} " if name_w else "")
        + f"{'OCCUPANCY':>9} {'CAPACITY':>8} {'FULL':>5} "
        + (f"{'':10} " if show_bar else "")
        + f"{'LAST EVENT (UTC)':24} {'EXPECTED':>8}"
    )
    now = datetime.datetime.now(datetime.timezone.utc)
    lines = [f"Train occupancy  {now.strftime('%H:%M:%S')} UTC", header, "-" * len(header)]
    for r in rows:
        value = "-" if r.value is None else str(r.value)
        if r.value is not None and r.capacity:
            full, bar = f"{r.value / r.capacity:.0%}", _bar(r.value / r.capacity)
        else:
            full, bar = "-", ""
        last = f"{r.last_updated.strftime('%H:%M:%S.%f')[:12]} ({_age(r.last_updated)})" if r.last_updated else "-"
        expected = "-" if r.expected is None else str(r.expected)
        lines.append(
            f"{r.train_id:8} "
            + (f"{r.name[:name_w]:{name_w}} " if name_w else "")
            + f"{value:>9} {r.capacity or '-':>8} {full:>5} "
            + (f"{bar:10} " if show_bar else "")
            + f"{last:24} {expected:>8}"
        )
    if not rows:
        lines.append("(no data)")
    return "\n".join(lines + [""] + footer)
