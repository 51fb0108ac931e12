"""python -m device.sign: make a signed message by hand, or look inside one.

For whoever writes a device's firmware or tests a fleet by hand: the envelope the publisher
sends (docs/design.md, "Device identity"; worked example in docs/operations.md, "Device keys"),
made from the command line with the same code the publisher uses.

  count   --private_key KEY --device_id D --delta N --seq S [--event_time T] [--key_id k1]
  reset   --private_key KEY --control_id C --train_id T [--terminus] [--event_time T]
  payload --private_key KEY --kid P/K [FILE]    sign a payload of your own (stdin by default)
  show    [ENVELOPE] [--public_key PEM]         header and payload; with a key, whether it verifies

The envelope is parsed as the pipeline parses it (occupancy.wire.parse_message, with the
pipeline's default limits) before it is printed: a message the pipeline would dead-letter is
refused here with the same reason (exit 2), nothing printed on stdout. `--format pubsub` prints
one JSON line, the envelope and the Pub/Sub attributes the publisher sends with it, for
`gcloud pubsub topics publish` or a client library.
"""

import argparse
import json
import sys
from typing import Optional, Sequence

from occupancy import identity, wire
from occupancy.cli import UsageError

# What the pipeline's defaults accept (pipeline/options.py): checked here so as to fail early.
_MAX_ABS_DELTA = 100
_MAX_FUTURE_SKEW_S = 300.0


def _event_time_us(text: Optional[str]) -> int:
    if text is None:
        return wire.now_us()
    try:
        return wire.parse_time(text)
    except wire.Rejected as e:
        raise UsageError(f"--event_time: {e.detail}") from None


def _checked(envelope: bytes, attributes: Optional[dict]) -> None:
    """Raises UsageError with the pipeline's reason if it would dead-letter `envelope` at parsing."""
    try:
        wire.parse_message(
            envelope,
            (attributes or {}).get("event_id"),
            now_us=wire.now_us(),
            max_abs_delta=_MAX_ABS_DELTA,
            max_future_skew_s=_MAX_FUTURE_SKEW_S,
        )
    except wire.Rejected as e:
        raise UsageError(f"the pipeline would dead-letter this payload ({e.reason}): {e.detail}") from None


def _key_file(flag: str, path: str, load):
    """`load(the file's bytes)`; a file that cannot be read or used is a UsageError naming `flag`."""
    try:
        with open(path, "rb") as f:
            return load(f.read())
    except OSError as e:
        raise UsageError(f"{flag} {path}: {e.strerror}") from None
    except identity.IdentityError as e:
        raise UsageError(f"{flag} {path}: {e}") from None


def _message(args) -> tuple:
    """(payload bytes, attributes or None, kid) of the command."""
    if args.command == "count":
        payload, attributes = wire.encode_event(args.device_id, args.delta, _event_time_us(args.event_time), args.seq)
        return payload, attributes, identity.key_id(args.device_id, args.key_id)
    if args.command == "reset":
        kind = wire.TERMINUS if args.terminus else wire.RESET
        payload, attributes = wire.encode_reset(args.train_id, _event_time_us(args.event_time), kind)
        return payload, attributes, identity.key_id(args.control_id, args.key_id)
    if args.file == "-":
        return sys.stdin.buffer.read().strip(), None, args.kid
    try:
        with open(args.file, "rb") as f:
            return f.read().strip(), None, args.kid
    except OSError as e:
        raise UsageError(f"{args.file}: {e.strerror}") from None


def _sign(args, out) -> None:
    payload, attributes, kid = _message(args)
    try:
        identity.split_key_id(kid)
    except identity.IdentityError as e:
        raise UsageError(str(e)) from None
    signer = _key_file(
        "--private_key", args.private_key, lambda pem: identity.Signer(identity.load_private_key(pem), kid)
    )
    envelope = signer.sign(payload)
    _checked(envelope, attributes)  # the envelope itself, as the pipeline receives it
    envelope = envelope.decode("ascii")
    if args.format == "pubsub":
        out.write(json.dumps({"data": envelope, "attributes": attributes or {}}) + "\n")
    else:
        out.write(envelope + "\n")


def _show(args, out) -> int:
    data = (args.envelope if args.envelope != "-" else sys.stdin.read()).strip().encode("ascii", "replace")
    try:
        header, payload = identity.open_envelope(data)
    except identity.IdentityError as e:
        raise UsageError(str(e)) from None
    shown = {"header": header, "payload": payload.decode("utf-8", "replace")}
    verdict = 0
    if args.public_key:
        key, alg = _key_file("--public_key", args.public_key, identity.load_public_key)
        shown["verifies"] = alg == header.get("alg") and identity.verify(data, key, alg)
        verdict = 0 if shown["verifies"] else 1
    out.write(json.dumps(shown, indent=2) + "\n")
    return verdict


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m device.sign",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Exit codes: 0 done (show: it verifies), 1 show: it does not verify, 2 refused (a reason on stderr).",
    )
    commands = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def signing(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--private_key", required=True, metavar="PEM", help="The signer's private key file (PEM).")
        sub.add_argument(
            "--format",
            choices=("envelope", "pubsub"),
            default="envelope",
            help="envelope: the JWS alone (default); pubsub: JSON with the envelope and its attributes.",
        )
        return sub

    count = signing("count", "Sign a door device's count.")
    count.add_argument("--device_id", required=True, help="The door device (the key's principal).")
    count.add_argument("--key_id", default="k1", help="The key's id in the registry (default: k1).")
    count.add_argument("--delta", type=int, required=True, help="People in minus people out.")
    count.add_argument("--seq", type=int, required=True, help="The device's sequence number (0 or more).")
    count.add_argument(
        "--event_time", default=None, help="RFC 3339 with an offset, e.g. 2026-12-03T08:15:00Z (default: now)."
    )

    reset = signing("reset", "Sign a control principal's reset (or terminus) of a train.")
    reset.add_argument("--control_id", required=True, help="The control principal (the key's principal).")
    reset.add_argument("--key_id", default="k1", help="The key's id in the registry (default: k1).")
    reset.add_argument("--train_id", required=True, help="The train to set to zero.")
    reset.add_argument("--terminus", action="store_true", help="A terminus event instead of a reset.")
    reset.add_argument(
        "--event_time", default=None, help="RFC 3339 with an offset, e.g. 2026-12-03T08:15:00Z (default: now)."
    )

    payload = signing("payload", "Sign a payload of your own (checked as the pipeline parses it).")
    payload.add_argument("--kid", required=True, help="The envelope's kid: <principal>/<key id>.")
    payload.add_argument("file", nargs="?", default="-", help="The payload file (default: stdin).")

    show = commands.add_parser("show", help="Decode an envelope; with --public_key, verify it.")
    show.add_argument("envelope", nargs="?", default="-", help="The envelope (default: stdin).")
    show.add_argument("--public_key", default=None, metavar="PEM", help="Verify with this public key file.")
    return p


def main(argv: Optional[Sequence[str]] = None, out=sys.stdout) -> int:
    args = parser().parse_args(argv)
    try:
        if args.command == "show":
            return _show(args, out)
        _sign(args, out)
        return 0
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
