"""Progress of a long run (`make faults`, `make accuracy`, `make bench-scale`, `make bench`): each
step announced as it starts, with the time spent and an estimate of the time left.

The estimate starts from each step's expected seconds (what the run measured last time, written
down by its caller) and is scaled by how this run compares so far: a machine twice as slow
doubles what is left.
"""

import json
import logging
import time
from typing import Callable, Dict, Sequence, Tuple

_LOGGER = logging.getLogger(__name__)


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class Steps:
    """`steps`: (label, expected seconds) in the order they run; `step(label)` as each begins."""

    def __init__(
        self,
        run: str,
        steps: Sequence[Tuple[str, float]],
        clock: Callable[[], float] = time.monotonic,
        log: Callable[..., None] = _LOGGER.warning,
    ):
        self._run, self._steps, self._clock, self._log = run, list(steps), clock, log
        self._began = clock()
        self._done = 0  # steps finished (the one running is not)

    def left_s(self) -> float:
        """Seconds left, from the steps not yet finished, scaled by this run's pace so far."""
        expected_done = sum(s for _, s in self._steps[: self._done])
        pace = (self._clock() - self._began) / expected_done if expected_done > 0 else 1.0
        return pace * sum(s for _, s in self._steps[self._done :])

    def step(self, label: str) -> None:
        """Announces `label` (a step of the list; a label not in it is a step of its own)."""
        labels = [name for name, _ in self._steps]
        if label in labels[self._done :]:
            self._done = labels.index(label, self._done)
        self._log(
            "[%s] %d/%d %s; %s so far, about %s left",
            self._run,
            self._done + 1,
            len(self._steps),
            label,
            _duration(self._clock() - self._began),
            _duration(self.left_s()),
        )

    def finished(self) -> None:
        self._done = len(self._steps)
        self._log("[%s] done in %s", self._run, _duration(self._clock() - self._began))


def last_durations(path: str, rows_key: str, name_key: str = "name") -> Dict[str, float]:
    """name -> duration_s of each row of an earlier run's results file ({} if there is none)."""
    try:
        with open(path) as f:
            rows = json.load(f).get(rows_key) or []
    except (OSError, ValueError):
        return {}
    return {
        row[name_key]: float(row["duration_s"])
        for row in rows
        if isinstance(row, dict) and name_key in row and row.get("duration_s")
    }
