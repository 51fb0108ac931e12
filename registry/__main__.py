"""The device registry CLI: `python -m registry <command> ...`.

Manages the Firestore collections that replace the retired Cloud IoT Core
registry (docs/design.md, "Device registry"):

  register DEVICE_ID --train TRAIN_ID [--door D] [--again]   add a device, or register it again
  list [--train T] [--json]                         show devices
  assign DEVICE_ID TRAIN_ID                         move a device to another train
  enable DEVICE_ID / disable DEVICE_ID              accept or dead-letter its events
  train set TRAIN_ID --capacity N [--name S]        create or update a train
  train list [--json]                               show trains
  import FLEET.csv                                  register a whole fleet (batched)
  key ... / control ...                             public keys, control principals
  mqtt secret|bridge|sync|config ...                broker credentials, the broker's configuration

Authentication is Application Default Credentials (`gcloud auth
application-default login`, or a service account where it runs); with
FIRESTORE_EMULATOR_HOST set the client library talks to the emulator and needs
none. Global options may be given before or after the command.

Exit codes: 0 done; 2 usage or validation error (one `error: ...` line on
stderr); 1 Firestore could not be reached or refused the request.
"""

import argparse
import logging
import os
import sys
from typing import Callable, Optional, Sequence

from adapters import registry
from adapters.store import make_client
from occupancy import cli, registry_entries
from occupancy.cli import UsageError, positive_float
from occupancy.wire import ID_PATTERN
from registry import key_commands, mqtt_commands, train_commands
from registry.tables import print_rows, timestamp

# Named, not __name__: under `python -m` that would be "__main__", outside the "registry" logger
# that -v turns up (VERBOSE_LOGGERS).
_LOGGER = logging.getLogger("registry")
# What -v shows at DEBUG: this CLI, the registry's reads and writes, the domain, the device code.
VERBOSE_LOGGERS = ("registry", "adapters", "occupancy", "device")

DEFAULT_TIMEOUT_S = 30.0


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors become UsageError (one line, exit code 2, from main)."""

    def error(self, message):
        raise UsageError(f"{self.prog}: {message} (see --help)")


# ---- output ----------------------------------------------------------------------


def _device_row(device_id: str, data: dict) -> dict:
    return {
        "device_id": device_id,
        "train_id": data.get("train_id"),
        "door": data.get("door"),
        "enabled": bool(data.get("enabled", True)),
        "registered_at": timestamp(data.get("registered_at")),
        "updated_at": timestamp(data.get("updated_at")),
        "health": _health(data.get("health")),
    }


def _health(health) -> Optional[str]:
    """'ok', 'silent', 'biased +12%', ... from the device's health field (registry health)."""
    if not isinstance(health, dict) or "status" not in health:
        return None
    if health["status"] == "biased":
        return f"biased {100 * float(health.get('bias_estimate') or 0):+.0f}%"
    return str(health["status"])


DEVICE_COLUMNS = (
    ("DEVICE", "device_id"),
    ("TRAIN", "train_id"),
    ("DOOR", "door"),
    ("ENABLED", "enabled"),
    ("HEALTH", "health"),
    ("UPDATED", "updated_at"),
)
# ---- commands: each takes (client, args, out) ----------------------------------------


def cmd_register(client, args, out) -> None:
    written = registry.register_device(
        client, args.devices_collection, args.device_id, args.train, args.door, again=args.again, timeout=args.timeout
    )
    door = f", door {args.door}" if args.door is not None else ""
    state = "enabled" if written["enabled"] else "still disabled: 'enable' it when it may count again"
    again = "; its seq history in the pipeline starts afresh" if args.again else ""
    print(f"registered device {args.device_id} to train {args.train}{door} ({state}{again})", file=out)
    if args.generate_key:
        from adapters.registry import keys

        try:
            pem = key_commands.generate_key_file(args.generate_key, args.alg)
        except FileExistsError:
            raise UsageError(f"{args.generate_key} exists: a device's key is never overwritten") from None
        key = keys.add_key(client, args.devices_collection, args.device_id, args.key_id, pem, timeout=args.timeout)
        print(
            f"wrote its private key to {args.generate_key} (mode 0600: it stays on the device) and "
            f"registered the {key.alg} public key {key.key_id}",
            file=out,
        )


def cmd_list(client, args, out) -> None:
    docs = registry.list_devices(client, args.devices_collection, args.train, timeout=args.timeout)
    print_rows([_device_row(i, d) for i, d in docs], DEVICE_COLUMNS, args.json, out)


def cmd_assign(client, args, out) -> None:
    registry.assign_device(client, args.devices_collection, args.device_id, args.train_id, timeout=args.timeout)
    print(f"assigned device {args.device_id} to train {args.train_id}", file=out)


def _cmd_set_enabled(enabled: bool) -> Callable:
    def run(client, args, out) -> None:
        registry.set_enabled(client, args.devices_collection, args.device_id, enabled, timeout=args.timeout)
        print(f"{'enabled' if enabled else 'disabled'} device {args.device_id}", file=out)

    return run


# ---- parser ---------------------------------------------------------------------------


def _add_global_flags(parser: argparse.ArgumentParser, top_level: bool) -> None:
    """The global flags, on the top-level parser and again on each command.

    On the commands their default is SUPPRESS, so a flag given before the
    command is not overwritten by the command's default.
    """

    def default(value):
        return value if top_level else argparse.SUPPRESS

    group = parser.add_argument_group("global options")
    group.add_argument(
        "--project",
        default=default(None),
        help="Google Cloud project (default: $GOOGLE_CLOUD_PROJECT, else "
        f"{cli.EMULATOR_PROJECT} when FIRESTORE_EMULATOR_HOST is set).",
    )
    group.add_argument("--database", default=default("(default)"), help="Firestore database id (default: (default)).")
    group.add_argument(
        "--devices_collection", default=default("devices"), help="Collection of device documents (default: devices)."
    )
    group.add_argument(
        "--trains_collection", default=default("trains"), help="Collection of train documents (default: trains)."
    )
    group.add_argument(
        "--json",
        action="store_true",
        default=default(False),
        help="Print list commands as a JSON array instead of a table.",
    )
    group.add_argument(
        "--timeout",
        type=positive_float,
        default=default(DEFAULT_TIMEOUT_S),
        help=f"Seconds to keep trying Firestore per call, retries included (default: {DEFAULT_TIMEOUT_S:g}).",
    )
    group.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=default(False),
        help="Log what the command does (and tracebacks of backend errors).",
    )


def _command(subparsers, name: str, run: Callable, help_text: str, description: str = None):
    parser = subparsers.add_parser(name, help=help_text, description=description or help_text)
    _add_global_flags(parser, top_level=False)
    parser.set_defaults(run=run)
    return parser


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every command."""
    parser = _Parser(
        prog="python -m registry",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"Device and train ids must match {ID_PATTERN}.",
    )
    _add_global_flags(parser, top_level=True)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    register = _command(
        commands,
        "register",
        cmd_register,
        "Register a device to a train (or, with --again, register it again).",
        "Register a new device to a train, enabled. A device already registered is refused: "
        "use 'assign' to move it to another train. Registering it again to the same train "
        "(--again, after its outbox and seq counter were wiped) gives it a new registered_at, "
        "which makes the pipeline forget the device's old seq and refuse the counts it made "
        "before, and the door as given; a disabled device stays disabled.",
    )
    register.add_argument("device_id", metavar="DEVICE_ID")
    register.add_argument("--train", required=True, metavar="TRAIN_ID")
    register.add_argument("--door", metavar="D", help="Door label (optional).")
    register.add_argument(
        "--again",
        action="store_true",
        help="Register an already registered device again (its seq counter was wiped).",
    )
    register.add_argument(
        "--generate_key",
        metavar="PATH",
        help="Run on the device: make its key pair, the private key to PATH (mode 0600, "
        "never overwritten), and register the public key.",
    )
    register.add_argument(
        "--alg",
        default="EdDSA",
        choices=("EdDSA", "ES256", "RS256"),
        help="The generated key's algorithm (default: EdDSA).",
    )
    register.add_argument("--key_id", default="k1", metavar="K", help="The generated key's id (default: k1).")

    listing = _command(commands, "list", cmd_list, "List registered devices.")
    listing.add_argument("--train", metavar="TRAIN_ID", help="Only the devices of this train.")

    assign = _command(
        commands, "assign", cmd_assign, "Move a registered device to another train (keeps its seq history)."
    )
    assign.add_argument("device_id", metavar="DEVICE_ID")
    assign.add_argument("train_id", metavar="TRAIN_ID")

    for name, enabled, help_text in (
        ("enable", True, "Accept a registered device's events again."),
        ("disable", False, "Dead-letter a registered device's events (unknown_device)."),
    ):
        _command(commands, name, _cmd_set_enabled(enabled), help_text).add_argument("device_id", metavar="DEVICE_ID")

    train_commands.add_commands(commands, _command)
    key_commands.add_commands(commands, _command)
    mqtt_commands.add_commands(commands, _command)
    return parser


# ---- running --------------------------------------------------------------------------


def resolve_project(project: Optional[str]) -> str:
    """occupancy.cli.resolve_project, its error as a UsageError."""
    try:
        return cli.resolve_project(project)
    except cli.NoProject as e:
        raise UsageError(str(e)) from None


def _where(args) -> str:
    emulator = os.environ.get("FIRESTORE_EMULATOR_HOST")
    place = f"the emulator at {emulator}, " if emulator else ""
    return f"({place}project {args.project}, database {args.database})"


def describe_backend_error(error: Exception, args) -> str:
    """A one-line explanation of a Firestore or credentials failure."""
    from google.api_core import exceptions as gexc
    from google.auth import exceptions as auth_exc

    where = _where(args)
    if isinstance(error, auth_exc.DefaultCredentialsError):
        return (
            "no Google credentials found: run 'gcloud auth application-default login', "
            "or set FIRESTORE_EMULATOR_HOST to use the emulator"
        )
    if isinstance(error, gexc.RetryError):
        cause = getattr(error, "cause", None)
        return f"cannot reach Firestore {where} within {args.timeout:g}s" + (f": {cause}" if cause else "")
    if isinstance(error, (gexc.ServiceUnavailable, gexc.DeadlineExceeded)):
        return f"cannot reach Firestore {where}: {error}"
    if isinstance(error, (gexc.PermissionDenied, gexc.Unauthenticated, auth_exc.RefreshError)):
        return f"Firestore refused the credentials {where}: {error} (the account needs the Cloud Datastore User role)"
    return f"Firestore request failed {where}: {error}"


def _backend_errors() -> tuple:
    from google.api_core import exceptions as gexc
    from google.auth import exceptions as auth_exc

    return gexc.GoogleAPIError, auth_exc.GoogleAuthError


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs one command; returns the exit code (0 ok, 2 usage/validation, 1 backend)."""
    args = None
    try:
        args = build_parser().parse_args(argv)
        if args.verbose:
            for name in VERBOSE_LOGGERS:
                logging.getLogger(name).setLevel(logging.DEBUG)
        if not getattr(args, "needs_registry", True):  # e.g. `mqtt config`: text, no Firestore
            args.run(None, args, sys.stdout)
            return 0
        args.project = resolve_project(args.project)
        _LOGGER.debug("Firestore project %s, database %s", args.project, args.database)
        args.run(make_client(args.project, args.database), args, sys.stdout)
        return 0
    except (UsageError, registry_entries.RegistryError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except _backend_errors() as e:
        _LOGGER.debug("Backend error", exc_info=True)
        print(f"error: {describe_backend_error(e, args)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    sys.exit(main())
