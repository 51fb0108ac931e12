"""The door-device publisher: counts in, Pub/Sub out, through a durable outbox.

    python -m device.publisher --device_id ic1832-car3-door2 --topic occupancy-events \\
        --source stdin [--outbox /var/lib/occupancy-publisher/outbox.sqlite]

A reader thread takes counts from the source (`stdin`, `simulate` or `replay
FILE`) and commits each one to the SQLite outbox (device/outbox.py) with the
device's next `seq`; it never waits for the network. A sender thread publishes
the outbox in order (payload and attributes from occupancy.wire.encode_event,
Pub/Sub ordering key = device id) and deletes a row only once Pub/Sub has
acknowledged it. While Pub/Sub is unreachable the counts wait in the outbox and
the sender retries with capped exponential back-off and jitter; after a crash or
restart the outbox is sent from where it stopped. A count may be sent twice (an
acknowledgement lost on the way back), never lost: the pipeline drops the copy
by `event_id`.

When the outbox holds `--max_outbox` rows the reader stops reading (a warning
says so) until the sender frees space: a count is never dropped, and a source
that cannot wait (a pipe) is held back by its own buffer.

SIGTERM or SIGINT: stop reading, give the sender `--drain_timeout_s` to empty
the outbox, exit 0; whatever is left goes out at the next start.

Exit codes: 0 stopped by a signal, or the source ended and the outbox is empty;
1 the source ended but counts are still in the outbox (they go out at the next
start), or the reader failed; 2 usage or configuration error (one `error: ...`
line on stderr): invalid device id, bad credentials file, outbox in use, topic
missing or permission denied at the first publish.

`--transport mqtt` sends the same outbox to an MQTT broker instead, as IoT Core's
devices did (device/mqtt_sender.py; a row leaves the outbox after the broker's PUBACK).

Depends on google-cloud-pubsub and paho-mqtt only (the `.[device]` extra): nothing here may
import Beam or the Firestore client.
"""

import argparse
import logging
import os
import signal
import sys
import threading
import time
from typing import Callable, Iterator, Optional, Sequence

from device.mqtt_sender import MqttSender
from device.options import parse_args
from device.outbox import Outbox, OutboxError
from device.pubsub_auth import pubsub_destination
from device.sender import Sender, Stats, make_client_factory
from device.sources import Reading, replay_source, simulate_source, stdin_source
from occupancy import cli, mqtt, wire
from occupancy.cli import UsageError

_LOGGER = logging.getLogger(__name__)

# ---- reading ------------------------------------------------------------------------


class Reader(threading.Thread):
    """Moves readings from the source into the outbox; blocks only on local disk or a full outbox."""

    def __init__(
        self,
        source: Iterator[Reading],
        outbox: Outbox,
        device_id: str,
        stats: Stats,
        progress_key: Optional[str],
        halt: threading.Event,
    ):
        super().__init__(name="source-reader", daemon=True)
        self._source = source
        self._outbox = outbox
        self._device_id = device_id
        self._stats = stats
        self._progress_key = progress_key
        self._halt = halt
        # Held while a read count is being stored, so that shutdown does not cut it off.
        self.storing = threading.Lock()
        self.done = threading.Event()
        self.error: Optional[BaseException] = None

    def run(self) -> None:
        try:
            for reading in self._source:
                with self.storing:
                    self._store(reading)
                if self._halt.is_set():
                    return
        except Exception as e:  # reported by the main loop (exit code 1), not swallowed
            _LOGGER.exception("Reading the source failed")
            self.error = e
        finally:
            self.done.set()

    def _store(self, reading: Reading) -> None:
        meta = (
            {self._progress_key: str(reading.position)} if self._progress_key and reading.position is not None else None
        )
        if reading.error:
            self._stats.add("malformed")
            _LOGGER.warning("Skipped malformed input: %s", reading.error)
        elif reading.delta is not None:
            event_time_us = reading.event_time_us if reading.event_time_us is not None else wire.now_us()
            # The halt event also ends a wait for room: a count already read is stored.
            self._outbox.append(self._device_id, reading.delta, event_time_us, meta=meta, cancel=self._halt)
            self._stats.add("read")
        elif meta:
            self._outbox.set_meta(self._progress_key, meta[self._progress_key])


class Publisher:
    """The running publisher: reader and sender threads, status lines, shutdown."""

    def __init__(self, args: argparse.Namespace, outbox: Outbox, make_sender: Callable, destination: str):
        """`make_sender(outbox, stats)`: the thread that drains the outbox (device.sender.Sender, or
        device.mqtt_sender.MqttSender); `destination`: where it sends, for the log."""
        self.args = args
        self.outbox = outbox
        self.topic = destination
        self.stats = Stats()
        self.halt = threading.Event()  # stop reading (signal, fatal error, end of source)
        self.signalled = threading.Event()
        self.sender = make_sender(outbox, self.stats)
        source, progress_key = self._source()
        self.reader = Reader(source, outbox, args.device_id, self.stats, progress_key, self.halt)

    def _source(self):
        args = self.args
        if args.source == "replay":
            key = f"replay:{os.path.realpath(args.replay_file)}"
            start = 0 if args.from_start else int(self.outbox.get_meta(key) or 0)
            if start:
                _LOGGER.info(
                    "Resuming the replay of %s after line %d (--from_start starts over)", args.replay_file, start
                )
            return replay_source(
                args.replay_file,
                speed=args.speed,
                retime=args.retime,
                start_line=start,
                max_abs_delta=args.max_abs_delta,
                stop=self.halt,
            ), key
        if args.source == "simulate":
            return simulate_source(args.device_id, args.seed, self.halt), None
        # Unbuffered: a line is consumed from the pipe only when it is about to be stored.
        stream = os.fdopen(sys.stdin.fileno(), "rb", buffering=0, closefd=False)
        return stdin_source(stream, args.max_abs_delta, self.halt), None

    def _on_signal(self, signum, frame) -> None:
        _LOGGER.info("%s: stopping", signal.Signals(signum).name)
        self.signalled.set()
        self.halt.set()

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        _LOGGER.info(
            "Device %s publishing to %s; outbox %s holds %d counts, last seq %d",
            self.args.device_id,
            self.topic,
            self.outbox.path,
            self.outbox.pending(),
            self.outbox.last_seq(self.args.device_id),
        )
        self.sender.start()
        self.reader.start()
        self._loop()
        return self._shutdown()

    def _loop(self) -> None:
        next_status = time.monotonic() + self.args.status_interval_s
        while not (self.signalled.wait(0.2) or self.sender.fatal or self.reader.done.is_set()):
            if time.monotonic() >= next_status:
                _LOGGER.info("status: %s", self.stats.line(self.outbox))
                next_status += self.args.status_interval_s
            self._maybe_heartbeat()

    def _maybe_heartbeat(self) -> None:
        # Only into an empty outbox: a pile of liveness signals says nothing after an outage.
        if (
            self.args.heartbeat_s
            and not self.outbox.pending()
            and time.monotonic() - self.stats.last_append >= self.args.heartbeat_s
        ):
            self.outbox.append(self.args.device_id, 0, wire.now_us(), cancel=self.halt)
            self.stats.add("heartbeats")

    def _shutdown(self) -> int:
        by_signal = self.signalled.is_set()
        self.halt.set()
        # Let a count being stored finish; a reader blocked reading holds nothing.
        if self.reader.storing.acquire(timeout=5):
            self.reader.storing.release()
        drained = self._drain(by_signal)
        self.sender.stop()
        self.sender.join(timeout=2)
        _LOGGER.info("Stopped: %s", self.stats.line(self.outbox))
        if self.outbox.pending():
            _LOGGER.warning(
                "%d counts stay in the outbox %s and go out at the next start", self.outbox.pending(), self.outbox.path
            )
        if not (self.sender.is_alive() or self.reader.is_alive()):
            self.outbox.close()  # else the process exit closes it: every commit is on disk already
        if self.sender.fatal:
            print(f"error: {self.sender.fatal}", file=sys.stderr)
            return 2
        if self.reader.error is not None:
            return 1
        return 0 if self.signalled.is_set() or drained else 1

    def _drain(self, by_signal: bool) -> bool:
        """Gives the sender up to --drain_timeout_s to empty the outbox; True if it did."""
        self.sender.retry_now()
        deadline = time.monotonic() + self.args.drain_timeout_s
        while not self.outbox.wait_until_empty(0.2):
            # A signal while draining after the end of the source cuts the drain short.
            if self.sender.fatal or time.monotonic() >= deadline or (self.signalled.is_set() and not by_signal):
                return False
        return True


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = None
    try:
        args = parse_args(argv)
        logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(message)s")
        if args.emulator:
            os.environ["PUBSUB_EMULATOR_HOST"] = args.emulator
        use_emulator = bool(os.environ.get("PUBSUB_EMULATOR_HOST"))
        window = max(args.batch_max_messages, 1000)
        if args.transport == "mqtt":
            if not args.mqtt_secret_file:
                raise UsageError("--transport mqtt needs --mqtt_secret_file (or $OCCUPANCY_MQTT_SECRET_FILE)")
            try:
                secret = mqtt.read_secret_file(args.mqtt_secret_file)
            except mqtt.SecretFileError as e:
                raise UsageError(f"--mqtt_secret_file {e}") from None
            tls = mqtt.broker_tls(
                args.broker, args.mqtt_ca_file, args.mqtt_tls, args.mqtt_insecure, "--mqtt_ca_file", "--mqtt_insecure"
            )
            destination = f"mqtt{'s' if tls else ''}://{args.broker}{mqtt.topic_for(args.device_id)}"

            def make_sender(outbox, stats):
                return MqttSender(
                    outbox,
                    args.device_id,
                    args.broker,
                    secret,
                    stats,
                    window=window,
                    publish_timeout_s=args.publish_timeout_s,
                    max_backoff_s=args.max_backoff_s,
                    sign=sign,
                    tls=tls,
                    tls_ca_file=args.mqtt_ca_file,
                )
        else:
            credentials, destination = pubsub_destination(args.topic, args.project, args.credentials, use_emulator)
            client_factory = make_client_factory(credentials, args.batch_max_messages, args.batch_max_latency_s)

            def make_sender(outbox, stats):
                return Sender(
                    outbox,
                    destination,
                    client_factory,
                    stats,
                    window=window,
                    publish_timeout_s=args.publish_timeout_s,
                    max_backoff_s=args.max_backoff_s,
                    sign=sign,
                )

        # After the transport's checks: a configuration error is reported before the warning
        # about a missing key. The senders above are made later, with this `sign`.
        signer = load_signer(args.private_key, args.device_id, args.key_id, args.unsigned)
        sign = signer.sign if signer is not None else None
        outbox = Outbox(args.outbox, args.max_outbox, on_full=_warn_full)
    except (UsageError, OutboxError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return Publisher(args, outbox, make_sender, destination).run()


def load_signer(path: Optional[str], device_id: str, key_name: str, unsigned: bool = False):
    """The device's signer from its private key file (PEM); None only with `unsigned`. Without
    a key a publisher would send counts the pipeline refuses (its default, --device_auth=require)
    and delete them on Pub/Sub's ack: every count lost, silently. So a missing key is a
    configuration error, and unsigned counts are a choice made on the command line."""
    if unsigned:
        _LOGGER.warning(
            "--unsigned: counts are sent unsigned; only a pipeline with --device_auth=off or log accepts them"
        )
        return None
    if not path:
        raise UsageError(
            "no --private_key (or $OCCUPANCY_PRIVATE_KEY): the pipeline refuses unsigned counts; "
            "give the device's key (registry register --generate_key PATH made it), or --unsigned on purpose"
        )
    from occupancy import identity  # the JOSE library only where a key is used

    try:
        mode = cli.access_of_others(path)
    except OSError as e:
        raise UsageError(f"cannot read --private_key {path}: {e.strerror}") from None
    if mode:
        raise UsageError(f"--private_key {path} is readable by others (mode {oct(mode)}): chmod 600 it")
    try:
        return identity.Signer.from_file(path, identity.key_id(device_id, key_name))
    except (OSError, identity.IdentityError) as e:
        raise UsageError(f"--private_key {path}: {e}") from None


def _warn_full(max_rows: int) -> None:
    _LOGGER.warning(
        "Outbox full (%d counts waiting): reading paused until Pub/Sub takes some; no count is dropped", max_rows
    )


if __name__ == "__main__":
    sys.exit(main())
