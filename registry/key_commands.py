"""The registry CLI's identity commands (python -m registry key ... / control ...), and
`register --generate_key`: a device's key pair made on the device, its public half uploaded.

  key add DEVICE_ID --public_key FILE [--key_id K] [--expires ISO-8601]
  key list DEVICE_ID
  key remove DEVICE_ID KEY_ID
  control register CONTROL_ID --trains T1,T2 | '*'
"""

import datetime
import json

from adapters.registry import keys
from occupancy import identity
from registry.tables import print_rows

KEY_COLUMNS = (("KEY_ID", "key_id"), ("ALG", "alg"), ("EXPIRES", "expires"))


def generate_key_file(path: str, alg: str) -> str:
    """Writes a new private key to `path` (mode 0600, never overwritten); returns the public PEM."""
    private_key = identity.generate_private_key(alg)
    identity.write_private_key(path, private_key)
    return identity.public_pem(private_key)


def _expires(text):
    if not text:
        return None
    try:
        value = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"--expires must be an ISO 8601 time, got {text!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=datetime.timezone.utc)


def cmd_key_add(client, args, out) -> None:
    with open(args.public_key) as f:
        pem = f.read()
    key = keys.add_key(
        client, args.devices_collection, args.device_id, args.key_id, pem, _expires(args.expires), timeout=args.timeout
    )
    print(
        f"added {key.alg} key {key.key_id} to {args.device_id} (kid {args.device_id}/{key.key_id}); "
        f"the pipeline accepts it within its --registry_refresh_s",
        file=out,
    )


def cmd_key_list(client, args, out) -> None:
    rows = [
        {
            "key_id": k.key_id,
            "alg": k.alg,
            "expires": (
                datetime.datetime.fromtimestamp(k.expires_us / 1e6, datetime.timezone.utc).isoformat()
                if k.expires_us
                else None
            ),
        }
        for k in keys.list_keys(client, args.devices_collection, args.device_id, timeout=args.timeout)
    ]
    print_rows(rows, KEY_COLUMNS, args.json, out)


def cmd_key_remove(client, args, out) -> None:
    keys.remove_key(client, args.devices_collection, args.device_id, args.key_id, timeout=args.timeout)
    print(
        f"removed key {args.key_id} of {args.device_id}; messages it signs are refused within the "
        f"pipeline's --registry_refresh_s",
        file=out,
    )


def cmd_control_register(client, args, out) -> None:
    trains = [t.strip() for t in args.trains.split(",") if t.strip()]
    keys.register_control(client, args.devices_collection, args.control_id, trains, timeout=args.timeout)
    print(
        f"control principal {args.control_id} may reset {json.dumps(trains)}; add its key with "
        f"'key add {args.control_id} --public_key FILE'",
        file=out,
    )


def add_commands(commands, command) -> None:
    """Adds `key` and `control` to the CLI's subparsers (`command` makes one with the global flags)."""
    key = commands.add_parser(
        "key",
        help="Add, list or remove a device's public keys.",
        description="A device's public keys (at most 3), which its messages are verified with.",
    )
    key_commands = key.add_subparsers(dest="key_command", required=True, metavar="COMMAND")
    add = command(key_commands, "add", cmd_key_add, "Add a PEM public key (Ed25519, EC P-256 or RSA).")
    add.add_argument("device_id", metavar="DEVICE_ID")
    add.add_argument("--public_key", required=True, metavar="FILE", help="The PEM public key file.")
    add.add_argument("--key_id", default="k1", metavar="K", help="The key's id (default: k1).")
    add.add_argument("--expires", metavar="TIME", help="ISO 8601 expiry (default: never).")
    command(key_commands, "list", cmd_key_list, "List a device's keys.").add_argument("device_id", metavar="DEVICE_ID")
    remove = command(key_commands, "remove", cmd_key_remove, "Remove a key.")
    remove.add_argument("device_id", metavar="DEVICE_ID")
    remove.add_argument("key_id", metavar="KEY_ID")
    control = commands.add_parser(
        "control",
        help="Register an operator's control principal.",
        description="A control principal signs resets and terminus events.",
    )
    control_commands = control.add_subparsers(dest="control_command", required=True, metavar="COMMAND")
    register = command(
        control_commands,
        "register",
        cmd_control_register,
        "Register (or update) a control principal and the trains it may reset.",
    )
    register.add_argument("control_id", metavar="CONTROL_ID")
    register.add_argument("--trains", required=True, help="Comma-separated train ids, or '*' for every train.")
