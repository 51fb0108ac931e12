"""What a step does with an exception it does not know, met on one element.

On Dataflow a streaming bundle that raises is retried for ever and holds the watermark of
every train behind it, so no element may fail a bundle (docs/design.md, "No element stops
the job"). Each step catches what it knows (wire.Rejected, Firestore's transient and
permanent errors) where it meets it; anything else raised for one element ends here, as that
element's dead letter `internal_error` with the exception named, counted and logged with its
traceback. Transient errors are never caught here: they are raised before, so that the
runner retries the bundle.
"""

import logging

import apache_beam as beam

from occupancy import dead_letters, wire

_LOGGER = logging.getLogger(__name__)
DEAD_LETTER = "dead_letter"


def counter():
    """The counter of these dead letters, `rejected_internal_error` (as every reason's)."""
    return beam.metrics.Metrics.counter("occupancy", f"rejected_{wire.INTERNAL_ERROR}")


def describe(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {wire.shown(text) if text else ''}".rstrip(": ")


def dead_letter(step: str, error: BaseException, payload, attributes, message_id) -> beam.pvalue.TaggedOutput:
    """The `dead_letter` output for one element that raised `error` in `step` (logged here)."""
    _LOGGER.error(
        "%s: unexpected %s on message %s; it is a dead letter", step, describe(error), message_id, exc_info=error
    )
    record = dead_letters.record(
        wire.INTERNAL_ERROR, describe(error), payload, attributes, message_id, wire.now_us(), step
    )
    return beam.pvalue.TaggedOutput(DEAD_LETTER, record)
