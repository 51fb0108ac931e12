"""The registry CLI's train commands (python -m registry train set|list), the fleet
import and door health:

  train set TRAIN_ID --capacity N [--name S] [--number N] [--vehicle_id V]
  train list [--json]
  import FLEET.csv
  health [--train T] [--window N]
"""

import os

from adapters import registry
from occupancy import registry_entries
from occupancy.cli import UsageError, positive_int
from registry.tables import print_rows, timestamp

HEALTH_COLUMNS = (
    ("DEVICE", "device_id"),
    ("STATUS", "status"),
    ("BIAS", "bias"),
    ("Z", "z"),
    ("IN", "boarded"),
    ("OUT", "alighted"),
    ("TRIPS", "trips"),
)
TRAIN_COLUMNS = (("TRAIN", "train_id"), ("CAPACITY", "capacity"), ("NAME", "name"), ("UPDATED", "updated_at"))


def _train_row(train_id: str, data: dict) -> dict:
    return {
        "train_id": train_id,
        "capacity": data.get("capacity"),
        "name": data.get("name"),
        "updated_at": timestamp(data.get("updated_at")),
    }


def cmd_train_set(client, args, out) -> None:
    registry.set_train(
        client,
        args.trains_collection,
        args.train_id,
        args.capacity,
        args.name,
        train_number=args.number,
        vehicle_id=args.vehicle_id,
        timeout=args.timeout,
    )
    name = f", name {args.name!r}" if args.name is not None else ""
    name += f", train number {args.number!r}" if args.number else ""
    name += f", vehicle id {args.vehicle_id!r}" if args.vehicle_id else ""
    print(f"set train {args.train_id}: capacity {args.capacity}{name}", file=out)


def cmd_import(client, args, out) -> None:
    from adapters import fleet_import

    try:
        with open(args.csv_file, newline="", encoding="utf-8") as f:
            trains, devices = fleet_import.read_csv(f, os.path.dirname(os.path.abspath(args.csv_file)))
    except OSError as e:
        raise UsageError(f"cannot read {args.csv_file}: {e.strerror}") from None
    counts = fleet_import.import_fleet(
        client, args.devices_collection, args.trains_collection, trains, devices, timeout=args.timeout
    )
    print(
        f"imported {counts['trains']} trains; devices: {counts['devices_created']} registered, "
        f"{counts['devices_unchanged']} already on their train (left as they are); "
        f"{counts['keys_registered']} public keys registered",
        file=out,
    )


def cmd_health(client, args, out) -> None:
    from occupancy.door_health import Rule

    health = registry.assess_doors(
        client,
        args.devices_collection,
        args.trips_collection,
        args.train,
        Rule(window=args.window),
        timeout=args.timeout,
    )
    rows = [
        {
            "device_id": d,
            "status": h.status,
            "bias": f"{100 * h.bias_estimate:+.1f}%",
            "z": f"{h.z:+.1f}",
            "boarded": h.boarded,
            "alighted": h.alighted,
            "trips": h.trips,
        }
        for d, h in sorted(health.items())
    ]
    print_rows(rows, HEALTH_COLUMNS, args.json, out)


def cmd_train_list(client, args, out) -> None:
    docs = registry.list_trains(client, args.trains_collection, timeout=args.timeout)
    print_rows([_train_row(i, d) for i, d in docs], TRAIN_COLUMNS, args.json, out)


def add_commands(commands, command) -> None:
    """Adds `health`, `import` and `train` to the CLI's subparsers (`command` makes one with the
    global flags)."""
    health = command(
        commands,
        "health",
        cmd_health,
        "Assess door health from the trips balanced at each terminus.",
        "Assess every door from its train's newest trips (the trips collection, one document per "
        "terminus event) and write the result to the device's health field, which 'list' shows: "
        "'silent' (counted nobody while its train moved people), 'biased' (its ins/outs ratio is "
        "out of line with its train's other doors, z >= 4) or 'ok'. docs/accuracy.md.",
    )
    health.add_argument("--train", metavar="TRAIN_ID", help="Only this train's doors.")
    health.add_argument(
        "--window",
        type=positive_int,
        default=200,
        metavar="N",
        help="Newest trips to look at per train (default: 200).",
    )
    health.add_argument("--trips_collection", default="trips", help="Collection of trips (default: trips).")

    fleet = command(
        commands,
        "import",
        cmd_import,
        "Register a whole fleet from a CSV file (batched).",
        "Register a whole fleet from a CSV file with the header train_id,capacity,name,device_id,door "
        "(a row per device; name and door may be empty). Everything is checked first and nothing is "
        "written if a row is wrong: a device registered to another train (move it with 'assign'), "
        f"more than {registry_entries.MAX_DEVICES_PER_TRAIN} devices on a train. Trains are created or "
        "updated; devices already on their train are left as they are.",
    )
    fleet.add_argument("csv_file", metavar="FLEET.csv")

    train = commands.add_parser(
        "train", help="Create, update or list trains.", description="Create, update or list trains."
    )
    train_commands = train.add_subparsers(dest="train_command", required=True, metavar="COMMAND")
    train_set = command(train_commands, "set", cmd_train_set, "Create or update a train (a name not given is kept).")
    train_set.add_argument("train_id", metavar="TRAIN_ID")
    train_set.add_argument(
        "--capacity", type=int, required=True, metavar="N", help="Seats plus standing places, a positive integer."
    )
    train_set.add_argument("--name", metavar="S", help="Display name (optional).")
    train_set.add_argument(
        "--number",
        metavar="N",
        help="Train number: its trips' trip_short_name in the static schedule, which "
        "attaches it to the trip it runs (docs/design.md, 'Trips'; '' clears).",
    )
    train_set.add_argument(
        "--vehicle_id",
        metavar="V",
        help="Its vehicle id in the operator's own GTFS-RT VehiclePositions feed, which the "
        "API's enricher adds occupancy to (docs/api.md; '' clears).",
    )
    command(train_commands, "list", cmd_train_list, "List trains.")
