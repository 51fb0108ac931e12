"""python -m api --host H --port P: serves the API (and, on Cloud Run, listens on $PORT)."""

import argparse
import logging
import os
import sys
from typing import Optional, Sequence

from occupancy import log_format
from occupancy.cli import non_negative_float, positive_float, positive_int
from occupancy.fleet import DEFAULT_STALE_AFTER_S, Thresholds

_LOGGER = logging.getLogger(__name__)


def _thresholds(text: str) -> Thresholds:
    try:
        return Thresholds.parse(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number 0-65535, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m api",
        description="The train occupancy HTTP API (OpenAPI at /docs).",
        epilog="Against the emulators set FIRESTORE_EMULATOR_HOST (and FIREBASE_AUTH_EMULATOR_HOST); "
        "otherwise Application Default Credentials are used.",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="Interface to listen on (default: 127.0.0.1; 0.0.0.0 in a container)."
    )
    parser.add_argument(
        "--port",
        type=_port,
        default=int(os.environ.get("PORT") or 8080),
        help="Port to listen on (default: $PORT, else 8080).",
    )
    parser.add_argument(
        "--project",
        default=None,
        help="Google Cloud project (default: $GOOGLE_CLOUD_PROJECT, else demo-occupancy "
        "when FIRESTORE_EMULATOR_HOST is set).",
    )
    parser.add_argument("--database", default="(default)", help="Firestore database id (default: (default)).")
    for name in ("realtime", "history", "devices", "trains"):
        parser.add_argument(
            f"--{name}_collection", default=name, help=f"Collection of {name} documents (default: {name})."
        )
    parser.add_argument(
        "--private_reads",
        action="store_true",
        default=False,
        help="Occupancy reads need a signed-in user too (default: public).",
    )
    parser.add_argument(
        "--stale_after_s",
        type=positive_float,
        default=DEFAULT_STALE_AFTER_S,
        help=f"A train with no device message for this long is 'stale' (default: {DEFAULT_STALE_AFTER_S:g}).",
    )
    parser.add_argument(
        "--thresholds",
        type=_thresholds,
        default=Thresholds(),
        help="Lower bounds of the occupancy ratio for MANY_SEATS_AVAILABLE, "
        "FEW_SEATS_AVAILABLE, STANDING_ROOM_ONLY, CRUSHED_STANDING_ROOM_ONLY, FULL "
        "(default: " + ",".join(f"{b:g}" for b in Thresholds().bounds) + ").",
    )
    parser.add_argument(
        "--fleet_cache_s",
        type=non_negative_float,
        default=1.0,
        help="Age in seconds at which the fleet view (GET /v1/trains, the feed, the "
        "dashboard) is read again in the background, the last view served meanwhile; "
        "0 reads Firestore for every request (default: 1). After the first, a read asks "
        "only for the documents written since the last one.",
    )
    parser.add_argument(
        "--fleet_full_read_s",
        type=positive_float,
        default=60.0,
        help="How often the fleet view reads the whole fleet again rather than what changed: "
        "a train deleted from the registry leaves the view then (default: 60).",
    )
    parser.add_argument(
        "--doors_cache_s",
        type=non_negative_float,
        default=60.0,
        help="Seconds the feed keeps the registry's device-to-door map (one read per device "
        "each time; with --fleet_listener a listener keeps it instead; 0: every request).",
    )
    parser.add_argument(
        "--fleet_max_age_s",
        type=positive_float,
        default=30.0,
        help="A fleet view older than this (Firestore could not be read) answers 503 "
        "with Retry-After rather than old numbers (default: 30).",
    )
    parser.add_argument(
        "--firestore_timeout_s",
        type=positive_float,
        default=10.0,
        help="Bound on each Firestore call of a request, retries included (default: 10).",
    )
    parser.add_argument(
        "--firebase_api_key",
        default=os.environ.get("FIREBASE_API_KEY", ""),
        help="Firebase Web API key the dashboard signs in with (default: $FIREBASE_API_KEY).",
    )
    parser.add_argument(
        "--log_level", default="info", choices=["debug", "info", "warning", "error"], help="Log level (default: info)."
    )
    parser.add_argument(
        "--log_format",
        default=log_format.default(),
        choices=log_format.FORMATS,
        help=f"text, or json: one object per line for Cloud Logging (default: ${log_format.ENV} or text).",
    )
    parser.add_argument(
        "--fleet_listener",
        action="store_true",
        default=False,
        help="Follow realtime and trains with Firestore listeners (one read per changed "
        "document) instead of reading the whole fleet every --fleet_cache_s.",
    )
    parser.add_argument(
        "--gtfs_static",
        default="",
        metavar="GTFS.zip",
        help="The operator's GTFS static feed: trains are attached to their scheduled trips "
        "(by train number, or an operator's assignment) in the API and the GTFS-RT feed.",
    )
    parser.add_argument(
        "--upstream_vehicle_positions",
        default="",
        metavar="URL",
        help="The operator's own GTFS-RT VehiclePositions feed: served at "
        "/gtfs-rt/enriched-vehicle-positions.pb with occupancy added to each vehicle a "
        "train's vehicle_id names (positions and trips kept as they came).",
    )
    parser.add_argument(
        "--public_precision",
        default="coarse",
        choices=["coarse", "exact"],
        help="What readers who are not signed-in operators get (default: coarse): numbers "
        "sampled once per departure, the percentage rounded to --privacy_step_pct, the "
        "level drawn with secret-seeded boundaries, nothing below --privacy_min_capacity "
        "(docs/design.md, 'Privacy'); exact: the counts themselves.",
    )
    parser.add_argument(
        "--privacy_step_pct", type=positive_int, default=10, help="coarse: the public percentage's step (default: 10)."
    )
    parser.add_argument(
        "--privacy_min_capacity",
        type=positive_int,
        default=20,
        help="coarse: trains and carriages with fewer places publish nothing (default: 20).",
    )
    parser.add_argument(
        "--privacy_window_s",
        type=positive_int,
        default=300,
        help="coarse: a train without a scheduled trip is sampled once per window of this "
        "many seconds (with one: once per stop departure; default: 300).",
    )
    parser.add_argument(
        "--privacy_seed_file",
        default="",
        metavar="PATH",
        help="coarse: the secret seed of the public draws (16 bytes or more; default: "
        "$OCCUPANCY_PRIVACY_SEED, else one made per process).",
    )
    parser.add_argument(
        "--forecast_collection",
        default="forecasts",
        help="Firestore collection of the forecast job's documents, one per trip and service date "
        "(python -m pipeline.forecast; default: forecasts).",
    )
    parser.add_argument(
        "--public_cache_s",
        type=non_negative_float,
        default=30.0,
        help="coarse: seconds a public history page is served to every reader before it is read "
        "again (0: every request reads; default: 30).",
    )
    parser.add_argument(
        "--graceful_timeout_s",
        type=non_negative_float,
        default=10.0,
        help="Seconds to finish requests in flight on SIGTERM (default: 10).",
    )
    return parser


def settings_from(args):
    from api.deps import Settings
    from occupancy.cli import NoProject, resolve_project

    try:
        project = resolve_project(args.project)
    except NoProject as e:
        raise SystemExit(f"error: {e}") from None
    return Settings(
        project=project,
        database=args.database,
        realtime_collection=args.realtime_collection,
        history_collection=args.history_collection,
        devices_collection=args.devices_collection,
        trains_collection=args.trains_collection,
        public_reads=not args.private_reads,
        stale_after_s=args.stale_after_s,
        thresholds=args.thresholds,
        fleet_cache_s=args.fleet_cache_s,
        fleet_max_age_s=args.fleet_max_age_s,
        fleet_full_read_s=args.fleet_full_read_s,
        doors_cache_s=args.doors_cache_s,
        firestore_timeout_s=args.firestore_timeout_s,
        firebase_api_key=args.firebase_api_key,
        gtfs_static=args.gtfs_static,
        upstream_vehicle_positions=args.upstream_vehicle_positions,
        public_precision=args.public_precision,
        privacy_step_pct=args.privacy_step_pct,
        privacy_min_capacity=args.privacy_min_capacity,
        privacy_seed_file=args.privacy_seed_file,
        privacy_window_s=args.privacy_window_s,
        public_cache_s=args.public_cache_s,
        forecast_collection=args.forecast_collection,
        fleet_listener=args.fleet_listener,
    )


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    log_format.configure(args.log_level, args.log_format)
    import uvicorn

    from api.app import create_app

    app = create_app(settings_from(args))
    _LOGGER.info("Serving project %s on http://%s:%s (docs at /docs)", app.state.settings.project, args.host, args.port)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        # Its loggers (access lines included) through the root logger, in --log_format.
        log_config=None,
        timeout_graceful_shutdown=args.graceful_timeout_s,
        proxy_headers=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
