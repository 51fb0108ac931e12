"""The MQTT-to-Pub/Sub bridge.

    python -m bridge --broker 127.0.0.1:1883 --secret_file /etc/occupancy/bridge.secret \\
        --topic occupancy-events [--emulator HOST:PORT] [--health_port 8081]

Subscribes to every device's `/devices/{device_id}/events` (QoS 1, a persistent session)
and forwards each message to the Pub/Sub topic unchanged, acknowledging it to the broker
only after Pub/Sub acknowledged it (bridge/forwarder.py). Health and counters:
GET /healthz on --health_port. The bridge's credential at the broker is registered with
`python -m registry mqtt bridge BRIDGE_ID --secret_file PATH`.

Exit codes: 0 stopped by SIGTERM/SIGINT; 2 usage or configuration error.
"""

import argparse
import logging
import os
import signal
import sys
import threading
from typing import Optional, Sequence

from bridge import forwarder, health
from device.pubsub_auth import pubsub_destination  # found and authorised as a device's topic is
from device.sender import make_client_factory  # the same ordered, batched client as a device's
from occupancy import cli, log_format, mqtt
from occupancy.cli import UsageError

_LOGGER = logging.getLogger("bridge")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bridge",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--broker", type=cli.host_port, default="127.0.0.1:1883", help="The MQTT broker.")
    p.add_argument(
        "--username",
        type=str,
        default=mqtt.BRIDGE,
        help="The bridge's principal in the registry (its broker username).",
    )
    p.add_argument("--secret_file", type=str, required=True, help="The bridge's broker secret (mode 0600).")
    p.add_argument(
        "--client_id",
        type=str,
        default="occupancy-bridge",
        help="MQTT client id. The project's broker configuration replaces it with the username "
        "(use_username_as_clientid), so the session the broker keeps for the bridge while it is "
        "away is its username's: one username per bridge (two bridges with one take turns).",
    )
    p.add_argument(
        "--ca_file",
        type=str,
        default=None,
        metavar="PEM",
        help="TLS to the broker, its certificate verified against this CA.",
    )
    p.add_argument("--tls", action="store_true", help="TLS to the broker, verified against the system's CAs.")
    p.add_argument(
        "--insecure",
        action="store_true",
        help="Allow plaintext to a broker off this machine (its secret and the counts in clear).",
    )
    p.add_argument(
        "--topic", type=str, default="occupancy-events", help="Pub/Sub topic: a name, or projects/P/topics/T."
    )
    p.add_argument(
        "--project",
        type=str,
        default=None,
        help="Google Cloud project of the topic (default: $GOOGLE_CLOUD_PROJECT, or "
        f"{cli.EMULATOR_PROJECT} with --emulator).",
    )
    p.add_argument("--emulator", type=cli.host_port, default=None, help="Use the Pub/Sub emulator there.")
    p.add_argument(
        "--credentials",
        type=str,
        default=None,
        metavar="KEY.json",
        help="Service-account key file (default: Application Default Credentials).",
    )
    p.add_argument(
        "--max_in_flight",
        type=cli.positive_int,
        default=100,
        help="Messages forwarded and not yet acknowledged by Pub/Sub, at most (MQTT 5 "
        "Receive Maximum: the broker holds the rest).",
    )
    p.add_argument(
        "--publish_timeout_s",
        type=cli.positive_float,
        default=30.0,
        help="Deadline of one Pub/Sub publish, retries included: past it the bridge "
        "reconnects and the broker delivers the message again.",
    )
    p.add_argument(
        "--max_backoff_s",
        type=cli.positive_float,
        default=30.0,
        help="Longest wait between two reconnects while the broker or Pub/Sub fails.",
    )
    p.add_argument("--health_port", type=int, default=8081, help="Port of GET /healthz (0: any free port).")
    p.add_argument(
        "--status_interval_s",
        type=cli.positive_float,
        default=60.0,
        help="Seconds between two status lines in the log.",
    )
    p.add_argument(
        "--log_level", type=str, default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"), help="Log level."
    )
    p.add_argument(
        "--log_format",
        default=log_format.default(),
        choices=log_format.FORMATS,
        help=f"text, or json: one object per line for Cloud Logging (default: ${log_format.ENV} or text).",
    )
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    log_format.configure(args.log_level, args.log_format)
    if args.emulator:
        os.environ["PUBSUB_EMULATOR_HOST"] = args.emulator
    use_emulator = bool(os.environ.get("PUBSUB_EMULATOR_HOST"))
    try:
        secret = mqtt.read_secret_file(args.secret_file)
        credentials, topic = pubsub_destination(args.topic, args.project, args.credentials, use_emulator)
        tls = mqtt.broker_tls(args.broker, args.ca_file, args.tls, args.insecure, "--ca_file", "--insecure")
    except mqtt.SecretFileError as e:
        print(f"error: --secret_file {e}", file=sys.stderr)
        return 2
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    # Unhealthy once a message waits longer than a publish may take and the reconnect after it.
    counters = health.Counters(stall_after_s=args.publish_timeout_s + 30)
    server = health.serve(counters, args.health_port)
    host, port = args.broker.rsplit(":", 1)
    publishers = make_client_factory(credentials, batch_max_messages=100, batch_max_latency_s=0.01)
    bridge = forwarder.Forwarder(
        host=host,
        port=int(port),
        username=args.username,
        secret=secret,
        client_id=args.client_id,
        topic=topic,
        publisher_factory=publishers,
        counters=counters,
        max_in_flight=args.max_in_flight,
        publish_timeout_s=args.publish_timeout_s,
        max_backoff_s=args.max_backoff_s,
        tls=tls,
        tls_ca_file=args.ca_file,
    )
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: bridge.stop())
    _LOGGER.info("Bridge %s:%s -> %s; health on http://127.0.0.1:%d/healthz", host, port, topic, server.server_port)
    status = threading.Thread(target=_status_lines, args=(counters, args.status_interval_s, bridge), daemon=True)
    status.start()
    bridge.run()
    server.shutdown()
    server.server_close()  # its listening socket too
    _LOGGER.info("Stopped: %s", counters.snapshot())
    return 0


def _status_lines(counters: health.Counters, every_s: float, bridge) -> None:
    while not bridge.wait_stopped(every_s):
        _LOGGER.info("status: %s", counters.snapshot())


if __name__ == "__main__":
    sys.exit(main())
