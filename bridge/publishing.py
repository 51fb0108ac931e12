"""What the bridge publishes for an MQTT message, and which of Pub/Sub's answers are final
(bridge/forwarder.py does the forwarding: the window, the acks, the reconnects).

A message goes out byte for byte with the attributes its topic proves (occupancy.mqtt); one too
large for Pub/Sub, or one Pub/Sub refused for good, goes out cut past the wire format's bound,
so that the pipeline dead-letters it `oversized` instead of the bridge re-sending it for ever.
"""

from occupancy import mqtt, wire

# Pub/Sub takes a message of up to 10 MB (data and attributes); past this the bridge cuts it.
MAX_PUBLISH_BYTES = 9_000_000


def ordering_key(message) -> str:
    """The ordering key a message is published with: its device (as the forwarder sets it)."""
    return mqtt.device_of_topic(message.topic) or ""


def paused(error: BaseException) -> bool:
    """Whether the client refused a publish only because an earlier one of its ordering key
    failed (it pauses the key until resume_publish)."""
    from google.cloud.pubsub_v1.publisher import exceptions as publisher_exceptions

    return isinstance(error, publisher_exceptions.PublishToPausedOrderingKeyException)


class Failed:
    """A publish that raised at once, as a done future (the window handles both alike)."""

    def __init__(self, error: BaseException):
        self._error = error

    def done(self) -> bool:
        return True

    def exception(self):
        return self._error

    def add_done_callback(self, callback) -> None:
        callback(self)


def permanent(error: BaseException) -> bool:
    """Whether Pub/Sub (or its client) refused a message for what it is: publishing it again
    unchanged cannot succeed (a reconnect would bring it back for ever)."""
    from google.api_core import exceptions as gexc

    return isinstance(error, (gexc.InvalidArgument, ValueError, TypeError))


def publishable(message, refused: str = ""):
    """(data, attributes) to publish for an MQTT message: the payload unchanged with the
    attributes the topic proves; past MAX_PUBLISH_BYTES, or once Pub/Sub refused it (`refused`),
    the payload cut to one byte past the wire format's bound (the pipeline refuses it as
    `oversized`, keeping its first bytes) with `device_id` and `bridge_refused` alone."""
    payload = bytes(message.payload or b"")
    device = mqtt.device_of_topic(message.topic) or ""
    if refused or len(payload) > MAX_PUBLISH_BYTES:
        reason = refused or f"{len(payload):,} bytes, more than Pub/Sub takes"
        attributes = {"bridge_refused": reason[:200], **({"device_id": device} if device else {})}
        return payload[: wire.MAX_MESSAGE_BYTES + 1], attributes
    return payload, (mqtt.event_attributes(device, payload) if device else {})


def transient_retry(timeout_s: float):
    """Retries a publish on transient errors for `timeout_s` in all; then the bridge reconnects."""
    from google.api_core import exceptions as gexc
    from google.api_core import retry as retries

    return retries.Retry(
        predicate=retries.if_exception_type(
            gexc.ServiceUnavailable,
            gexc.DeadlineExceeded,
            gexc.Aborted,
            gexc.InternalServerError,
            gexc.ResourceExhausted,
            gexc.Unknown,
            gexc.Cancelled,
        ),
        initial=0.1,
        maximum=2.0,
        timeout=timeout_s,
    )


def describe(error: BaseException) -> str:
    text = " ".join(str(error).split()) or repr(error)
    return f"{type(error).__name__}: {text}"[:300]
