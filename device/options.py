"""The door-device publisher's command line: every flag, typed, with its default and help
(`python -m device.publisher --help`); device/publisher.py runs what it parses."""

import argparse
import os
from typing import Optional, Sequence

from device.sources import DEFAULT_MAX_ABS_DELTA
from occupancy import cli, wire
from occupancy.cli import UsageError, non_negative_float, positive_float, positive_int

DESCRIPTION = "The door-device publisher: counts in, Pub/Sub out, through a durable outbox."
DEFAULT_TOPIC = "occupancy-events"
SOURCES = ("stdin", "simulate", "replay")
TRANSPORTS = ("pubsub", "mqtt")


class _HelpFormatter(argparse.HelpFormatter):
    """Shows each option's default, except where there is none to show."""

    def _get_help_string(self, action):
        text = action.help or ""
        shown = action.default is not None and action.default is not False
        if shown and action.default != argparse.SUPPRESS and "%(default)" not in text:
            text += " (default: %(default)s)"
        return text


class _Parser(argparse.ArgumentParser):
    """Errors become UsageError: one `error:` line and exit code 2, from main."""

    def error(self, message):
        raise UsageError(f"{message} (see --help)")


def _device_id(text: str) -> str:
    if not wire.valid_id(text):
        raise argparse.ArgumentTypeError(f"invalid device id {text!r}: must match {wire.ID_PATTERN}")
    return text


def _default_outbox() -> str:
    # systemd's StateDirectory= sets STATE_DIRECTORY (see deploy/occupancy-publisher.service).
    return os.path.join(os.environ.get("STATE_DIRECTORY", "."), "outbox.sqlite")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m device.publisher", description=DESCRIPTION, formatter_class=_HelpFormatter)
    p.add_argument(
        "--device_id",
        type=_device_id,
        required=True,
        help=f"This door device's id (registered with python -m registry), matching {wire.ID_PATTERN}.",
    )
    p.add_argument(
        "--private_key",
        type=str,
        default=os.environ.get("OCCUPANCY_PRIVATE_KEY"),
        help="This device's private key (PEM, mode 0600; made by `python -m registry "
        "register --generate_key PATH`): every count is signed with it (default: "
        "$OCCUPANCY_PRIVATE_KEY). Required, unless --unsigned.",
    )
    p.add_argument(
        "--unsigned",
        action="store_true",
        default=False,
        help="Send counts unsigned, on purpose: only a pipeline with --device_auth=off or log "
        "accepts them (its default, require, dead-letters every one).",
    )
    p.add_argument(
        "--key_id",
        type=_device_id,
        default="k1",
        help="The key's id in the registry (the envelope's kid is DEVICE_ID/KEY_ID).",
    )
    p.add_argument(
        "--source",
        type=str,
        nargs="+",
        default=None,
        metavar=("SOURCE", "FILE"),
        help="Where counts come from: 'stdin' (lines '+2', '-1' or 'in,out'; the "
        "default), 'simulate' (station bursts for one door), or 'replay FILE' "
        "(a 'time,delta' CSV or JSON Lines log).",
    )
    p.add_argument(
        "--speed",
        type=non_negative_float,
        default=1.0,
        help="replay: pace relative to the log's own (2 = twice as fast, 0 = no waiting).",
    )
    p.add_argument(
        "--retime",
        action="store_true",
        default=False,
        help="replay: stamp each count with the time it is replayed instead of the "
        "log's time (the pipeline applies old times as late and rejects times "
        "more than 300 s ahead).",
    )
    p.add_argument(
        "--from_start",
        action="store_true",
        default=False,
        help="replay: start at the first line even if this outbox already replayed "
        "part of the file (else a restart resumes after the last stored line).",
    )
    p.add_argument("--seed", type=int, default=0, help="simulate: random seed.")
    p.add_argument(
        "--transport",
        type=str,
        default="pubsub",
        choices=TRANSPORTS,
        help="pubsub: straight to the Pub/Sub topic; mqtt: to the MQTT broker (--broker), "
        "as IoT Core's devices did, which the bridge forwards to Pub/Sub.",
    )
    p.add_argument(
        "--broker", type=cli.host_port, default="127.0.0.1:1883", metavar="HOST:PORT", help="mqtt: the broker."
    )
    p.add_argument(
        "--mqtt_ca_file",
        type=str,
        default=os.environ.get("OCCUPANCY_MQTT_CA_FILE"),
        metavar="PEM",
        help="mqtt: TLS to the broker, its certificate verified against this CA (default: $OCCUPANCY_MQTT_CA_FILE).",
    )
    p.add_argument(
        "--mqtt_tls",
        action="store_true",
        default=False,
        help="mqtt: TLS to the broker, its certificate verified against the system's CAs.",
    )
    p.add_argument(
        "--mqtt_insecure",
        action="store_true",
        default=False,
        help="mqtt: allow plaintext to a broker off this machine (its secret and the counts in clear).",
    )
    p.add_argument(
        "--mqtt_secret_file",
        type=str,
        default=os.environ.get("OCCUPANCY_MQTT_SECRET_FILE"),
        help="mqtt: this device's broker secret (made by `python -m registry mqtt "
        "secret DEVICE_ID --secret_file PATH`; default: $OCCUPANCY_MQTT_SECRET_FILE).",
    )
    p.add_argument(
        "--project",
        type=str,
        default=None,
        help="Google Cloud project of the topic (default: from a full --topic path, "
        "$GOOGLE_CLOUD_PROJECT, the credentials, or demo-occupancy with --emulator).",
    )
    p.add_argument("--topic", type=str, default=DEFAULT_TOPIC, help="Pub/Sub topic: a name, or projects/P/topics/T.")
    p.add_argument(
        "--credentials",
        type=str,
        default=None,
        metavar="KEY.json",
        help="Service-account key file, for devices without Application Default "
        "Credentials (keep it outside the repository; default: ADC).",
    )
    p.add_argument(
        "--emulator",
        type=cli.host_port,
        default=None,
        metavar="HOST:PORT",
        help="Use the Pub/Sub emulator there (sets PUBSUB_EMULATOR_HOST).",
    )
    p.add_argument(
        "--outbox",
        type=str,
        default=_default_outbox(),
        metavar="PATH",
        help="SQLite outbox file (created if missing; $STATE_DIRECTORY/outbox.sqlite under systemd).",
    )
    p.add_argument(
        "--max_outbox",
        type=positive_int,
        default=100_000,
        help="Rows the outbox may hold; when full, reading pauses (nothing is dropped).",
    )
    p.add_argument(
        "--batch_max_messages",
        type=positive_int,
        default=100,
        help="Pub/Sub client batching: messages per publish request.",
    )
    p.add_argument(
        "--batch_max_latency_s",
        type=non_negative_float,
        default=0.01,
        help="Pub/Sub client batching: longest wait to fill a batch, in seconds.",
    )
    p.add_argument(
        "--publish_timeout_s", type=positive_float, default=30.0, help="Deadline of one publish request, in seconds."
    )
    p.add_argument(
        "--max_backoff_s",
        type=positive_float,
        default=60.0,
        help="Longest wait between two publish attempts while Pub/Sub fails.",
    )
    p.add_argument(
        "--drain_timeout_s",
        type=non_negative_float,
        default=5.0,
        help="On SIGTERM/SIGINT or the end of the source: how long the sender may "
        "still try to empty the outbox before the publisher exits.",
    )
    p.add_argument(
        "--heartbeat_s",
        type=non_negative_float,
        default=0.0,
        help="Send a heartbeat (delta 0) after this many seconds without a count, "
        "while the outbox is empty; 0 = never.",
    )
    p.add_argument(
        "--max_abs_delta",
        type=positive_int,
        default=DEFAULT_MAX_ABS_DELTA,
        help="Larger deltas are skipped as malformed (the pipeline would reject them).",
    )
    p.add_argument(
        "--status_interval_s", type=positive_float, default=60.0, help="Seconds between two status lines in the log."
    )
    p.add_argument(
        "--log_level", type=str, default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"), help="Log level."
    )
    return p


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    kind, extra = (args.source or ["stdin"])[0], (args.source or [])[1:]
    if kind not in SOURCES:
        parser.error(f"argument --source: unknown source {kind!r} (choose from {', '.join(SOURCES)})")
    if kind == "replay" and len(extra) != 1:
        parser.error("argument --source: replay needs one FILE: --source replay FILE")
    if kind != "replay" and extra:
        parser.error(f"argument --source: {kind} takes no argument, got {' '.join(extra)}")
    args.source, args.replay_file = kind, (extra[0] if extra else None)
    if args.unsigned and args.private_key:
        parser.error("--unsigned with --private_key (or $OCCUPANCY_PRIVATE_KEY): choose one")
    if args.replay_file and not os.path.isfile(args.replay_file):
        parser.error(f"argument --source: replay file {args.replay_file} not found")
    return args
