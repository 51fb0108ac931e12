"""The learned forecast: the level apart from the shape (docs/forecast.md).

Trees do not extrapolate: fitted on loads that grow week over week, they forecast the level
of the weeks they saw, not the latest. So a load is read as `level(week) x shape(slot)`:

* **the level** of each week is the mean, over its days (holidays and other days
  calendar_dates changes left out), of the median ratio of the day's loads to the same trips'
  and stops' mean over the whole history (an event's crowd moves a median little). The level
  ahead is a straight line through the log of the latest `TREND_WEEKS` weeks, read at the last
  week: its trend smooths a week's noise, and is not carried further (carried forward, even
  damped, it cost more than it gained in the development backtest: docs/forecast.md);
* **the shape** is what gradient-boosted trees (scikit-learn's HistGradientBoostingRegressor)
  learn from the loads divided by their week's level, on calendar features: the weekday,
  whether calendar_dates changes the day (a holiday runs the service it names), the weekly
  pattern of the trip's service, the departure time, the stop's place along the trip, the
  trip's length and direction. The median (absolute error loss) is the forecast; the 10 % and
  90 % quantiles bound it;
* **the bounds are calibrated** on the last `CALIBRATION_DAYS` of the history, forecast from
  the weeks before them as a forecast is made: each bound is moved out (or in) by the share of
  its width that makes 80 % of those days' loads fall between them (conformalized quantile
  regression).

A slot whose trip has no observation in the history gets no forecast (None): never a number
invented from other trips.
"""

import datetime
from typing import Dict, List, NamedTuple, Optional, Sequence

import numpy as np

from occupancy.forecast.history import Observation, Slot
from occupancy.schedule import Schedule

TREND_WEEKS = 8
CALIBRATION_DAYS = 14
COVERAGE = 0.8
MIN_HISTORY_DAYS = 14
# Slots that usually carry fewer people than this say little about the level (Poisson noise).
MIN_USUAL_LOAD = 10
NAME = "level-hgb"
_EPOCH = datetime.date(2000, 1, 3)  # a Monday: week numbers count from it


class Prediction(NamedTuple):
    load: float
    p10: float
    p90: float


def _week(day: datetime.date) -> int:
    return (day - _EPOCH).days // 7


class Level:
    """A level per week of the history (`weeks`), and the level ahead (`ahead`)."""

    def __init__(self, observations: Sequence[Observation], exceptions=frozenset()):
        """`exceptions`: the days calendar_dates changes, left out (a holiday is no level)."""
        means: Dict[tuple, List[int]] = {}
        for o in observations:
            means.setdefault((o.trip_id, o.stop_sequence), []).append(o.load)
        usual = {key: float(np.mean(loads)) for key, loads in means.items()}
        ratios: Dict[datetime.date, List[float]] = {}
        for o in observations:
            expected = usual[(o.trip_id, o.stop_sequence)]
            if expected >= MIN_USUAL_LOAD and o.service_date not in exceptions:
                ratios.setdefault(o.service_date, []).append(o.load / expected)
        weeks: Dict[int, List[float]] = {}
        for day, day_ratios in ratios.items():  # the median: an event's crowd does not move it
            weeks.setdefault(_week(day), []).append(float(np.median(day_ratios)))
        self.weeks = {week: float(np.mean(ratios)) for week, ratios in sorted(weeks.items())}
        recent = sorted(self.weeks)[-TREND_WEEKS:]
        self.slope, self.ahead = 0.0, 1.0  # no week says anything (a quiet route): as usual
        if recent:
            logs = np.log([max(self.weeks[w], 1e-3) for w in recent])
            slope, intercept = (
                np.polyfit(np.array(recent, dtype=float), logs, 1) if len(recent) >= 3 else (0.0, np.mean(logs))
            )
            self.slope = float(slope)  # a week's growth, as a log
            self.ahead = float(np.exp(intercept + slope * recent[-1]))

    def of_week(self, day: datetime.date) -> float:
        """The level of a week of the history (the level ahead, for a week it does not hold)."""
        return self.weeks.get(_week(day)) or self.ahead


def features(slots: Sequence[Slot], schedule: Schedule) -> np.ndarray:
    exceptions = schedule.exception_days()
    patterns: Dict[str, int] = {}
    rows = np.empty((len(slots), 7), dtype=float)
    for i, s in enumerate(slots):
        if s.service_id not in patterns:
            patterns[s.service_id] = schedule.weekly_pattern(s.service_id)
        rows[i] = (
            s.service_date.weekday(),
            s.service_date in exceptions,
            patterns[s.service_id],
            s.departure_s / 60,
            s.position,
            s.stops,
            s.direction_id,
        )
    return rows


def _trees(quantile: float, seed: int):
    from sklearn.ensemble import HistGradientBoostingRegressor

    loss = dict(loss="absolute_error") if quantile == 0.5 else dict(loss="quantile", quantile=quantile)
    return HistGradientBoostingRegressor(
        **loss, max_iter=200, learning_rate=0.1, max_leaf_nodes=31, early_stopping=False, random_state=seed
    )


class _Fitted:
    """The three quantile models on the level-free loads of some observations."""

    def __init__(self, observations: Sequence[Observation], slot_of, schedule: Schedule, seed: int):
        self.level = Level(observations, schedule.exception_days())
        x = features([slot_of(o) for o in observations], schedule)
        y = np.array([o.load / self.level.of_week(o.service_date) for o in observations])
        self.models = {q: _trees(q, seed).fit(x, y) for q in (0.1, 0.5, 0.9)}

    def predict(self, slots: Sequence[Slot], schedule: Schedule) -> np.ndarray:
        """Rows of (p10, median, p90) in people, the level of each slot's day applied."""
        x = features(slots, schedule)
        out = np.column_stack([self.models[q].predict(x) for q in (0.1, 0.5, 0.9)]) * self.level.ahead
        return np.sort(np.maximum(out, 0.0), axis=1)  # quantiles never cross


class Model:
    """Fitted on the observations before `origin`; `predict` the slots from it on."""

    def __init__(self, observations: Sequence[Observation], schedule: Schedule, origin: datetime.date, seed: int = 0):
        self.schedule, self.origin = schedule, origin
        history = [o for o in observations if o.service_date < origin]
        self.history_days = len({o.service_date for o in history})
        self.trips = {o.trip_id for o in history}
        self._slots: Dict[tuple, Slot] = {}
        self._fitted: Optional[_Fitted] = None
        self.widen = 0.0
        if self.history_days < MIN_HISTORY_DAYS:
            return
        # Calibrated on the last CALIBRATION_DAYS counted: up to the origin, or up to where a
        # route's counts stopped (suspended for works, its counters moved).
        last = max(o.service_date for o in history)
        split = last + datetime.timedelta(days=1 - CALIBRATION_DAYS)
        earlier = [o for o in history if o.service_date < split]
        if len({o.service_date for o in earlier}) >= MIN_HISTORY_DAYS:
            self.widen = self._calibration(earlier, [o for o in history if o.service_date >= split], seed)
        self._fitted = _Fitted(history, self._slot_of, schedule, seed)

    def _slot_of(self, o: Observation) -> Slot:
        """The slot an observation was made in (from the schedule's trip; the trip's stop order)."""
        key = (o.trip_id, o.stop_sequence)
        slot = self._slots.get(key)
        if slot is None:
            trip = self.schedule.trips.get(o.trip_id)
            stops = trip.stops if trip else ()
            place = next((i for i, s in enumerate(stops) if s.stop_sequence == o.stop_sequence), None)
            departure = stops[place].departure_s if place is not None else 0
            slot = self._slots[key] = Slot(
                o.service_date,
                o.trip_id,
                o.stop_sequence,
                o.stop_id,
                trip.route_id if trip else "",
                (trip.direction_id or 0) if trip else 0,
                departure,
                place if place is not None else o.stop_sequence - 1,
                len(stops),
                trip.service_id if trip else "",
            )
        return slot._replace(service_date=o.service_date)

    def _calibration(self, earlier, later, seed: int) -> float:
        """How far (a share of p10-p90's width) the bounds must move for COVERAGE of `later`."""
        fitted = _Fitted(earlier, self._slot_of, self.schedule, seed)
        bounds = fitted.predict([self._slot_of(o) for o in later], self.schedule)
        y = np.array([o.load for o in later], dtype=float)
        width = np.maximum(bounds[:, 2] - bounds[:, 0], 1.0)
        scores = np.maximum(bounds[:, 0] - y, y - bounds[:, 2]) / width
        level = min(1.0, COVERAGE * (1 + 1 / len(scores)))
        return float(np.quantile(scores, level))

    def predict(self, slots: Sequence[Slot]) -> List[Optional[Prediction]]:
        if self._fitted is None or not slots:
            return [None] * len(slots)
        bounds = self._fitted.predict(slots, self.schedule)
        width = np.maximum(bounds[:, 2] - bounds[:, 0], 1.0)
        low = np.maximum(bounds[:, 0] - self.widen * width, 0.0)
        high = bounds[:, 2] + self.widen * width
        return [
            Prediction(float(bounds[i, 1]), float(min(low[i], bounds[i, 1])), float(max(high[i], bounds[i, 1])))
            if s.trip_id in self.trips
            else None
            for i, s in enumerate(slots)
        ]
