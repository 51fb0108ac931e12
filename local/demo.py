"""`make run`: the whole system on one machine, with a live occupancy table.

    python -m local.demo [--duration SECONDS] [--seed N]

Steps, each announced on the terminal:
  1. emulators: reuses the Pub/Sub and Firestore emulators named by
     PUBSUB_EMULATOR_HOST / FIRESTORE_EMULATOR_HOST when they answer, else
     starts them on free ports (and stops them at the end);
  2. topic `occupancy-events` and subscriptions `occupancy-pipeline` and
     `occupancy-archive` (on a reused emulator they are recreated, so a previous
     run's unread messages do not replay into this one); the archive records every
     message in .local/archive as a Cloud Storage subscription would (local/archive.py),
     for a replay;
  3. the demo fleet in the registry (collections `trains` and `devices`), each train
     numbered after the trips it runs in the demo's timetable (sim/timetable.py, written to
     .local/timetable.zip: the pipeline and the API read it as --gtfs_static);
     registering the devices again makes the pipeline forget their old `seq`,
     since the simulated devices start counting at 1;
  4. the forecast (local/forecast_side.py): weeks of the timetable's past service seeded as
     TIDES files in .local/history, and the forecast job run on them for today in the
     background (log in .local/forecast.log); the API serves what it writes;
  5. `python -m pipeline.main` on the local runner, log in .local/pipeline.log, the TIDES
     tables in .local/tides;
  6. the HTTP API (python -m api) on --api_port (or a free port if it is taken),
     with the Firebase Auth emulator (reused like the others, via
     FIREBASE_AUTH_EMULATOR_HOST) and an operator account; log in .local/api.log;
  7. the MQTT side (local/mqtt_side.py): a mosquitto broker, broker secrets for the
     first train's doors, the bridge (python -m bridge, log in .local/bridge.log);
  8. the simulated door devices (sim.simulator, played by sim.publisher) in real time, their
     trains keeping to the timetable: the first train's doors over MQTT through the bridge, the
     others straight to Pub/Sub;
  9. a table of Firestore `realtime/{train}` refreshed every second (local/watch.py; a plain
     table every few seconds when stdout is not a terminal).

Ctrl-C, SIGTERM, SIGHUP (the terminal closed), a broken stdout (`make run |
head`, or `| tee` when Ctrl-C ends tee first) or the end of --duration stop
everything this command started and exit 0; a pipeline that dies shows its
log's tail and exits 1.
"""

import argparse
import contextlib
import datetime
import faulthandler
import functools
import logging
import os
import pathlib
import shutil
import signal
import sys
import time
from typing import Optional

from google.api_core import exceptions as gexc

from adapters.store import make_client
from local import demo_fleet, stack
from local.archive import Archiver
from local.auth_emulator import AuthEmulator
from local.broker import BrokerError
from local.emulator_set import EmulatorSet
from local.emulators import EmulatorError, start_on_a_port
from local.forecast_side import HISTORY_DAYS, ForecastSide
from local.mqtt_side import MqttSide
from local.stack import DEMO_OPERATOR, PROJECT
from local.terminal import OutputGone, relative, say, show
from local.watch import PLAIN_INTERVAL_S, Watch, count_dead_letters
from occupancy import registry_entries
from occupancy.cli import positive_float
from sim import simulator, timetable
from sim.mqtt_route import MqttRoute
from sim.publisher import DevicePublisher

_LOGGER = logging.getLogger(__name__)

REPO = pathlib.Path(__file__).resolve().parent.parent
TOPIC = "occupancy-events"
SUBSCRIPTION = "occupancy-pipeline"
# What records the run for a replay, as a Cloud Storage subscription would (local/archive.py).
ARCHIVE_SUBSCRIPTION = "occupancy-archive"
DEVICES, TRAINS = "devices", "trains"
PIPELINE_ARGS = ("--registry_refresh_s=10",)
TIMETABLE_WEEKS = 8  # of service before today: the seeded history's days
# From writing the timetable to the trains' first trip (the fleet's trains a quarter stop apart
# after it): longer than starting the pipeline, the API, the MQTT side and the simulator takes
# (5 s measured; a train whose first stop is gone when the simulator starts begins with its
# next trip, HEADWAY_S later).
TRIP_LEAD_S = 25


class Terminated(Exception):
    """SIGTERM or SIGHUP, turned into an exception so that the same cleanup runs as for Ctrl-C."""


class Demo:
    """Everything `make run` starts, and the one place that stops it again."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.fleet = simulator.DEMO_FLEET
        self.log_path = pathlib.Path(args.log).resolve()
        self.emulators = EmulatorSet(PROJECT, say)
        self.pipeline = None
        self.pipeline_started = 0.0
        self.api = None
        self.api_url = None
        self.api_log_path = self.log_path.parent / "api.log"
        self.publisher: Optional[DevicePublisher] = None
        self.mqtt: Optional[MqttSide] = None
        self.forecast: Optional[ForecastSide] = None
        self.archiver: Optional[Archiver] = None
        self.timetable_path = self.log_path.parent / "timetable.zip"
        self.phase_s = 0
        self.client = None
        self.dead_letters_before = 0

    # ---- start ---------------------------------------------------------------------

    def create_pubsub(self) -> None:
        from google.cloud import pubsub_v1

        say(f"creating topic {TOPIC} and subscriptions {SUBSCRIPTION} and {ARCHIVE_SUBSCRIPTION}...")
        subscriber = pubsub_v1.SubscriberClient()
        with subscriber:
            for name in (SUBSCRIPTION, ARCHIVE_SUBSCRIPTION):
                with contextlib.suppress(gexc.NotFound):
                    # Unread messages of an earlier run would replay its stale counts into this one.
                    subscriber.delete_subscription(subscription=stack.subscription_path(PROJECT, name), timeout=30)
        stack.ensure_topic(PROJECT, TOPIC, [SUBSCRIPTION, ARCHIVE_SUBSCRIPTION])

    def start_archive(self) -> None:
        """Records every message of this run (the files of an earlier run are removed: its
        devices' keys are gone, a replay would refuse its messages)."""
        directory = self.log_path.parent / "archive"
        shutil.rmtree(directory, ignore_errors=True)
        shutil.rmtree(self.log_path.parent / "tides", ignore_errors=True)
        say(f"archive of the messages (to replay, docs/operations.md): {relative(directory)}")
        self.archiver = Archiver(stack.subscription_path(PROJECT, ARCHIVE_SUBSCRIPTION), str(directory))
        self.archiver.start()

    def write_timetable(self) -> None:
        self.phase_s = demo_fleet.write_timetable(self.timetable_path, TIMETABLE_WEEKS, TRIP_LEAD_S)

    def load_fleet(self) -> None:
        self.client = make_client(PROJECT)
        self.keys = demo_fleet.register(self.client, self.fleet, DEVICES, TRAINS)
        self.dead_letters_before = sum((count_dead_letters(self.client) or {}).values())

    def start_pipeline(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path.write_bytes(b"")  # this run's log only: its tail is what a failure shows
        say("starting the pipeline (python -m pipeline.main, BundleBasedDirectRunner)...")
        say(f"pipeline log: {relative(self.log_path)}")
        tides_dir = self.log_path.parent / "tides"
        say(f"TIDES tables (Parquet, stop_visits and passenger_events): {relative(tides_dir)}")
        self.pipeline = stack.start_pipeline(
            PROJECT,
            SUBSCRIPTION,
            *PIPELINE_ARGS,
            f"--tides_output={tides_dir}",
            f"--tides_window_s={self.args.tides_window_s}",
            f"--stop_gap_s={self.args.stop_gap_s}",
            f"--gtfs_static={self.timetable_path}",
            env=self.emulators.env(),
            log_path=str(self.log_path),
        )
        self.pipeline_started = time.monotonic()

    def start_api(self) -> None:
        shown = [self.args.api_port]  # the port last said

        def start(port: int) -> bool:
            if port != shown[0]:
                say(f"port {shown[0]} is taken: the API uses {port}")
                shown[0] = port
            self.api_log_path.write_bytes(b"")
            self.api = stack.start_api(
                PROJECT,
                port,
                f"--gtfs_static={self.timetable_path}",
                env=self.emulators.env(),
                log_path=str(self.api_log_path),
            )
            self.api_url = f"http://127.0.0.1:{port}"
            try:
                stack.wait_until_serving(self.api, self.api_url)
                return True
            except RuntimeError:
                return False  # exited: its port taken since it was picked (a second demo), or not

        if not start_on_a_port(start, self.args.api_port)[1]:
            raise RuntimeError(f"the API exited with code {self.api.returncode}")
        auth = AuthEmulator(project=PROJECT)
        auth.host_port = os.environ[auth.env_var]
        stack.create_operator(auth, *DEMO_OPERATOR)
        say(f"dashboard: {self.api_url}/")
        say(f"GTFS-Realtime feed: {self.api_url}/gtfs-rt/vehicle-positions.pb (?format=json to read it)")
        say(
            f"load ahead: {self.api_url}/gtfs-rt/trip-updates.pb (GTFS-RT TripUpdates) and "
            f"{self.api_url}/siri/2.1/estimated-timetable.xml (SIRI-ET)"
        )
        say(f"API: {self.api_url}  (docs {self.api_url}/docs, occupancy {self.api_url}/v1/trains)")
        say(f"API metrics (Prometheus): {self.api_url}/metrics")
        say(f"operator sign-in (Auth emulator): {DEMO_OPERATOR[0]} / {DEMO_OPERATOR[1]}")

    def start_forecast(self) -> None:
        self.forecast = ForecastSide(
            self.log_path.parent, self.fleet, self.timetable_path, self.phase_s, self.args.seed
        )
        self.forecast.start(PROJECT, self.emulators.env(), datetime.datetime.now(datetime.timezone.utc))
        say(
            f"seeded {self.forecast.visits} stop visits of the timetable's last {HISTORY_DAYS} days; "
            f"the forecast job computes today's in the background (log {relative(self.forecast.log_path)})"
        )

    def start_mqtt(self) -> None:
        devices = list(self.fleet[0].devices)
        directory = self.log_path.parent / "mqtt"
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        say(
            f"starting the MQTT broker (mosquitto) and the bridge; {len(devices)} doors of "
            f"{self.fleet[0].train_id} get broker secrets and send over MQTT..."
        )
        self.mqtt = MqttSide(str(directory))
        self.mqtt.start(self.client, devices, PROJECT, TOPIC, str(self.log_path.parent / "bridge.log"))
        say(
            f"MQTT broker: {self.mqtt.broker.host_port}; bridge health: "
            f"http://127.0.0.1:{self.mqtt.health_port}/healthz, bridge metrics (Prometheus): "
            f"http://127.0.0.1:{self.mqtt.health_port}/metrics"
        )

    def start_simulator(self) -> None:
        due = functools.partial(timetable.stops_from, phase_s=self.phase_s)
        sim = simulator.Simulation(self.fleet, self.args.seed, keys=self.keys, timetable=due)
        route = MqttRoute(self.mqtt.broker.host_port, self.mqtt.secrets) if self.mqtt else None
        now_us = int(time.time() * 1_000_000)
        waits = [(next(due(t.train_id, now_us)).arrive_us - now_us) / 1e6 for t in self.fleet]
        say(
            f"starting {sum(len(t.devices) for t in self.fleet)} simulated door devices "
            f"(seed {self.args.seed}) publishing to {TOPIC}" + (" and over MQTT" if route else "") + "; "
            f"their trains begin their first trips in {min(waits):.0f}-{max(waits):.0f} s..."
        )
        self.publisher = DevicePublisher(sim, PROJECT, TOPIC, mqtt_route=route).start()

    # ---- stop ----------------------------------------------------------------------

    def shutdown(self) -> None:
        """Stops what this run started, in reverse order; safe to call at any point."""
        if self.publisher is not None:
            say("stopping the device simulator...")
            self.publisher.stop()
            expected = ", ".join(f"{train} {value}" for train, value in self.publisher.expected().items())
            say(
                f"published {self.publisher.published()} messages; the simulator's counts for what was sent: {expected}"
            )
        if self.forecast is not None:
            self.forecast.stop()
        if self.mqtt is not None:
            say("stopping the bridge and the MQTT broker...")
            self.mqtt.stop()
        if self.archiver is not None:
            say(f"archived {self.archiver.stop()} messages")
        if self.api is not None:
            say(f"stopping the API (pid {self.api.pid})...")
            stack.stop_process(self.api)
        if self.pipeline is not None:
            say(f"stopping the pipeline (pid {self.pipeline.pid})...")
            stack.stop_process(self.pipeline)
        self.emulators.stop()
        say("stopped")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m local.demo",
        description="Emulators, demo fleet, pipeline and simulated door devices, with a live "
        "occupancy table. Ctrl-C stops everything it started.",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=0.0,
        help="Seconds to run once everything is started, then stop cleanly; 0 runs until Ctrl-C.",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="Seed of the simulated devices: same seed, same passengers."
    )
    parser.add_argument("--refresh", type=float, default=1.0, help="Seconds between redraws of the live table.")
    parser.add_argument(
        "--tides_window_s",
        type=positive_float,
        default=60.0,
        help="The pipeline's --tides_window_s: seconds of event time per TIDES file.",
    )
    parser.add_argument(
        "--stop_gap_s",
        type=positive_float,
        default=20.0,
        help="The pipeline's --stop_gap_s: seconds without a count after which a train has left a stop "
        f"(the timetable's trains run {timetable.STOP_S - timetable.DWELL_S} s from one stop to the next).",
    )
    parser.add_argument(
        "--plain",
        action="store_true",
        help=f"Print a plain table every {PLAIN_INTERVAL_S:g}s instead of redrawing "
        "(the default when stdout is not a terminal).",
    )
    parser.add_argument("--api_port", type=int, default=8080, help="Port of the HTTP API (a free one if it is taken).")
    parser.add_argument(
        "--log",
        type=str,
        default=str(REPO / ".local" / "pipeline.log"),
        help="Where the pipeline's log goes (overwritten on each run).",
    )
    args = parser.parse_args(argv)
    if args.duration < 0 or args.refresh <= 0:
        parser.error("--duration must be >= 0 and --refresh > 0")
    return args


def _on_signal(signum, frame):
    raise Terminated(signal.Signals(signum).name)


def _while_stopping(signum, frame):
    say("still stopping, please wait...")


def main(argv=None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    # `kill -USR1 <pid>` prints where every thread is (the tests do it to a demo that hangs).
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    demo = Demo(args)
    code = 1
    try:
        demo.emulators.start()
        demo.create_pubsub()
        demo.start_archive()
        demo.write_timetable()
        demo.load_fleet()
        demo.start_forecast()
        demo.start_pipeline()
        demo.start_api()
        demo.start_mqtt()
        demo.start_simulator()
        code = Watch(demo).run()
    except (KeyboardInterrupt, Terminated) as e:
        with contextlib.suppress(OutputGone):
            show()
        say(f"terminated ({e})" if isinstance(e, Terminated) else "interrupted (Ctrl-C)")
        code = 0
    except OutputGone:
        code = 0
    except (EmulatorError, BrokerError, registry_entries.RegistryError, gexc.GoogleAPICallError) as e:
        say(f"error: {e}")
    except (RuntimeError, TimeoutError) as e:  # the API did not come up
        say(f"error: {e}; see {relative(demo.api_log_path)}")
    finally:
        # A second Ctrl-C must not cut the cleanup short and leave processes behind.
        for stop_signal in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(stop_signal, _while_stopping)
        demo.shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
