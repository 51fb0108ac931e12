"""ParseEvents: Pub/Sub messages -> validated, event-time stamped Events."""

import datetime
import logging
import zoneinfo

import apache_beam as beam
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Timestamp

from occupancy import dead_letters, wire
from transforms import (
    coders,  # noqa: F401  (registers the Event coder)
    guard,
)

_LOGGER = logging.getLogger(__name__)
DEAD_LETTER = "dead_letter"


class ParseEvent(beam.DoFn):
    """PubsubMessage -> Event stamped with its payload event time; rejects -> dead letters.

    The element timestamp comes from the validated payload, never from a read
    attribute: a malformed attribute must not be able to fail the read itself.
    """

    def __init__(self, max_abs_delta: int, max_future_skew_s: float, legacy_timezone: str):
        self._max_abs_delta = max_abs_delta
        self._max_future_skew_s = max_future_skew_s
        self._legacy_timezone = legacy_timezone
        self._parsed = beam.metrics.Metrics.counter("occupancy", "parsed")
        self._rejected = {
            reason: beam.metrics.Metrics.counter("occupancy", f"rejected_{reason}") for reason in wire.REASONS
        }
        self._unexpected = guard.counter()

    def setup(self):
        self._legacy_tz = (
            datetime.timezone.utc if self._legacy_timezone == "UTC" else zoneinfo.ZoneInfo(self._legacy_timezone)
        )

    def process(self, message):
        data = getattr(message, "data", message)
        attributes = getattr(message, "attributes", None) or {}
        message_id = getattr(message, "message_id", None)
        try:
            yield from self._parse(data, attributes, message_id)
        except Exception as e:  # noqa: BLE001 - no element may fail the bundle (transforms/guard.py)
            self._unexpected.inc()
            yield guard.dead_letter("ParseEvents", e, data, attributes, message_id)

    def _parse(self, data, attributes, message_id):
        now_us = wire.now_us()
        try:
            event = wire.parse_message(
                data,
                message_id,
                now_us=now_us,
                max_abs_delta=self._max_abs_delta,
                max_future_skew_s=self._max_future_skew_s,
                legacy_tz=self._legacy_tz,
            )
        except wire.Rejected as e:
            self._rejected[e.reason].inc()
            _LOGGER.info("Rejected message %s: %s", message_id, e)
            yield beam.pvalue.TaggedOutput(
                DEAD_LETTER,
                dead_letters.record(e.reason, e.detail, data, attributes, message_id, now_us, "ParseEvents"),
            )
            return
        self._parsed.inc()
        event = event._replace(raw=data, attributes=tuple(sorted(attributes.items())), message_id=message_id or "")
        yield TimestampedValue(event, Timestamp(micros=event.event_time_us))


class ParseEvents(beam.PTransform):
    """PCollection[PubsubMessage] -> tagged outputs `events` (Event) and `dead_letter` (dict)."""

    def __init__(self, max_abs_delta: int = 100, max_future_skew_s: float = 300.0, legacy_timezone: str = "UTC"):
        super().__init__()
        self._fn = ParseEvent(max_abs_delta, max_future_skew_s, legacy_timezone)

    def expand(self, messages):
        return messages | "Parse" >> beam.ParDo(self._fn).with_output_types(wire.Event).with_outputs(
            DEAD_LETTER, main="events"
        )
