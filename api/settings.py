"""The API's settings, declared once: each a field of `Settings` with its default and its
command-line flag (`python -m api --help`, api/__main__.py)."""

import argparse
import dataclasses
import os

from occupancy.cli import non_negative_float, positive_float, positive_int
from occupancy.fleet import DEFAULT_STALE_AFTER_S, Thresholds


def _parsed(parse, text: str):
    """`parse(text)`, its ValueError shown by argparse as it reads."""
    try:
        return parse(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _setting(default, help: str, **flag):
    """A setting: its default and its command-line flag (`python -m api`, api/__main__.py), declared
    once. `flag` holds argparse's keywords (`type`, `choices`, `action`, `metavar`); `flag=` names
    the flag when it is not `--<name>`, `env=` a variable whose value is the flag's default, and
    `cli_default=` a default the command line has instead (None: resolved later)."""
    return dataclasses.field(default=default, metadata={"help": help, **flag})


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything the service is configured with (`python -m api --help`)."""

    project: str = _setting(
        "demo-occupancy",
        "Google Cloud project (default: $GOOGLE_CLOUD_PROJECT, else demo-occupancy when "
        "FIRESTORE_EMULATOR_HOST is set).",
        cli_default=None,
    )
    database: str = _setting("(default)", "Firestore database id (default: (default)).")
    realtime_collection: str = _setting("realtime", "Collection of realtime documents (default: realtime).")
    history_collection: str = _setting("history", "Collection of history documents (default: history).")
    devices_collection: str = _setting("devices", "Collection of devices documents (default: devices).")
    trains_collection: str = _setting("trains", "Collection of trains documents (default: trains).")
    # Occupancy reads without a token (apps, riders); device data and writes always need one.
    public_reads: bool = _setting(
        True,
        "Occupancy reads need a signed-in user too (default: public).",
        flag="--private_reads",
        action="store_false",
    )
    stale_after_s: float = _setting(
        DEFAULT_STALE_AFTER_S,
        f"A train with no device message for this long is 'stale' (default: {DEFAULT_STALE_AFTER_S:g}).",
        type=positive_float,
    )
    thresholds: Thresholds = _setting(
        Thresholds(),
        "Lower bounds of the occupancy ratio for MANY_SEATS_AVAILABLE, FEW_SEATS_AVAILABLE, "
        "STANDING_ROOM_ONLY, CRUSHED_STANDING_ROOM_ONLY, FULL (default: "
        + ",".join(f"{b:g}" for b in Thresholds().bounds)
        + ").",
        type=lambda text: _parsed(Thresholds.parse, text),
    )
    fleet_cache_s: float = _setting(
        1.0,
        "Age in seconds at which the fleet view (GET /v1/trains, the feed, the dashboard) is read "
        "again in the background, the last view served meanwhile; 0 reads Firestore for every "
        "request (default: 1). After the first, a read asks only for the documents written since "
        "the last one.",
        type=non_negative_float,
    )
    fleet_full_read_s: float = _setting(
        60.0,
        "How often the fleet view reads the whole fleet again rather than what changed: a train "
        "deleted from the registry leaves the view then (default: 60).",
        type=positive_float,
    )
    fleet_max_age_s: float = _setting(
        30.0,
        "A fleet view older than this (Firestore could not be read) answers 503 with Retry-After "
        "rather than old numbers (default: 30).",
        type=positive_float,
    )
    doors_cache_s: float = _setting(
        60.0,
        "Seconds the feed keeps the registry's device-to-door map (one read per device each time; "
        "with --fleet_listener a listener keeps it instead; 0: every request).",
        type=non_negative_float,
    )
    firestore_timeout_s: float = _setting(
        10.0,
        "Bound on each Firestore call of a request, retries included (default: 10).",
        type=positive_float,
    )
    firebase_api_key: str = _setting(
        "",
        "Firebase Web API key the dashboard signs in with (public by design; empty on the "
        "emulator; default: $FIREBASE_API_KEY).",
        env="FIREBASE_API_KEY",
    )
    gtfs_static: str = _setting(
        "",
        "The operator's GTFS static feed: trains are attached to their scheduled trips (by train "
        "number, or an operator's assignment) in the API and the GTFS-RT feed.",
        metavar="GTFS.zip",
    )
    upstream_vehicle_positions: str = _setting(
        "",
        "The operator's own GTFS-RT VehiclePositions feed: served at "
        "/gtfs-rt/enriched-vehicle-positions.pb with occupancy added to each vehicle a train's "
        "vehicle_id names (positions and trips kept as they came; api/enricher.py).",
        metavar="URL",
    )
    public_precision: str = _setting(
        "coarse",
        "What readers who are not signed-in operators get (default: coarse): numbers sampled once "
        "per departure, the percentage rounded to --privacy_step_pct, the level drawn with "
        "secret-seeded boundaries, nothing below --privacy_min_capacity (docs/design.md, "
        "'Privacy'); exact: the counts themselves.",
        choices=["coarse", "exact"],
    )
    privacy_step_pct: int = _setting(10, "coarse: the public percentage's step (default: 10).", type=positive_int)
    privacy_min_capacity: int = _setting(
        20, "coarse: trains and carriages with fewer places publish nothing (default: 20).", type=positive_int
    )
    privacy_seed_file: str = _setting(
        "",
        "coarse: the secret seed of the public draws (16 bytes or more; default: "
        "$OCCUPANCY_PRIVACY_SEED, else one made per process).",
        metavar="PATH",
    )
    privacy_window_s: int = _setting(
        300,
        "coarse: a train without a scheduled trip is sampled once per window of this many seconds "
        "(with one: once per stop departure; default: 300).",
        type=positive_int,
    )
    forecast_collection: str = _setting(
        "forecasts",
        "Firestore collection of the forecast job's documents, one per trip and service date "
        "(python -m pipeline.forecast; docs/forecast.md; default: forecasts).",
    )
    public_cache_s: float = _setting(
        30.0,
        "coarse: seconds a public answer (one train, a history page) is served to every reader "
        "before it is read again (0: every request reads; default: 30).",
        type=non_negative_float,
    )
    fleet_listener: bool = _setting(
        False,
        "Follow realtime and trains with Firestore listeners (one read per changed document, "
        "adapters/fleet_listener.py) instead of reading the whole fleet every --fleet_cache_s.",
        action="store_true",
    )


def add_setting_flags(parser: argparse.ArgumentParser) -> None:
    """Adds a flag for every field of Settings to `parser`."""
    for field in dataclasses.fields(Settings):
        flag = dict(field.metadata)
        name = flag.pop("flag", f"--{field.name}")
        default = flag.pop("cli_default", field.default)
        env = flag.pop("env", None)
        if env:
            default = os.environ.get(env, default)
        parser.add_argument(name, dest=field.name, default=default, **flag)


def settings_from(args, **resolved) -> Settings:
    """Settings from the parsed flags (`add_setting_flags`), with `resolved` values instead."""
    given = {field.name: getattr(args, field.name) for field in dataclasses.fields(Settings)}
    return Settings(**{**given, **resolved})
