"""python -m device.sign: what it makes is what the pipeline accepts, checked by PyJWT on its
own and by the pipeline's authenticator against a registry entry; what the pipeline would
dead-letter is refused before signing; the worked example in docs/operations.md is its output."""

import json
import os
import pathlib
import re
import subprocess
import sys

import jwt
import pytest

from occupancy import authenticate, identity, registry_entries, wire

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _sign(*args, stdin=None):
    return subprocess.run(
        [sys.executable, "-m", "device.sign", *args],
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def _key(tmp_path, alg, name="key"):
    private = identity.generate_private_key(alg)
    path = identity.write_private_key(str(tmp_path / f"{name}.pem"), private)
    public = tmp_path / f"{name}.pub"
    public.write_text(identity.public_pem(private))
    return path, str(public), identity.public_pem(private)


def _entry(pem, alg, **fields):
    return registry_entries.device_entry({"keys": [{"key_id": "k1", "alg": alg, "public_key": pem}], **fields})


def _accepted_by_the_pipeline(envelope: bytes, entry, principal_entry=None) -> wire.Event:
    event = wire.parse_message(envelope, None, now_us=wire.now_us(), max_abs_delta=100, max_future_skew_s=300)._replace(
        raw=envelope
    )
    verdict = authenticate.Authenticator().check(event, entry, wire.now_us(), principal_entry)
    assert verdict is None, verdict
    return event


@pytest.mark.parametrize("alg", identity.ALGORITHMS)
def test_a_signed_count_is_what_the_pipeline_accepts(tmp_path, alg):
    private, public_file, pem = _key(tmp_path, alg)
    made = _sign(
        "count", "--private_key", private, "--device_id", "door-1", "--delta", "3", "--seq", "41",
        "--event_time", "2026-12-03T08:15:00Z", "--format", "pubsub",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    message = json.loads(made.stdout)
    envelope = message["data"].encode("ascii")
    assert message["attributes"] == {"event_id": "door-1:41", "event_time": "2026-12-03T08:15:00.000Z"}

    decoded = jwt.api_jws.PyJWS().decode_complete(envelope, key=pem, algorithms=[alg])
    assert decoded["header"]["kid"] == "door-1/k1"
    assert json.loads(decoded["payload"]) == {
        "device_id": "door-1", "delta": 3, "seq": 41, "event_time": "2026-12-03T08:15:00.000Z"
    }  # fmt: skip
    event = _accepted_by_the_pipeline(envelope, _entry(pem, alg, train_id="t1"))
    assert (event.device_id, event.delta, event.seq) == ("door-1", 3, 41)

    shown = _sign("show", message["data"], "--public_key", public_file)
    assert shown.returncode == 0 and json.loads(shown.stdout)["verifies"] is True


def test_a_reset_is_signed_by_the_control_principal(tmp_path):
    private, _, pem = _key(tmp_path, "EdDSA")
    made = _sign("reset", "--private_key", private, "--control_id", "ops", "--train_id", "t1", "--terminus")
    assert made.returncode == 0, made.stderr
    control = _entry(pem, "EdDSA", role="control", trains=["t1"])
    event = _accepted_by_the_pipeline(made.stdout.strip().encode(), None, {"ops": control}.get)
    assert (event.kind, event.train_id) == (wire.TERMINUS, "t1")


def test_what_the_pipeline_would_refuse_is_refused_before_signing(tmp_path):
    private, _, _ = _key(tmp_path, "EdDSA")
    count = ("count", "--private_key", private, "--device_id", "door-1", "--seq", "1")
    for args, reason in (
        ((*count, "--delta", "250"), "exceeds max_abs_delta"),
        ((*count, "--delta", "1", "--event_time", "2099-01-01T00:00:00Z"), "future_timestamp"),
        ((*count, "--delta", "1", "--event_time", "08:15"), "RFC 3339"),
        (("count", "--private_key", str(tmp_path / "missing.pem"), "--device_id", "d", "--seq", "1", "--delta", "1"),
         "No such file"),
        (("payload", "--private_key", private, "--kid", "door-1/k1"), "must be a JSON object"),
        (("payload", "--private_key", private, "--kid", "no-slash"), "kid must be"),
        (("payload", "--private_key", private, "--kid", "door-1/k1", str(tmp_path / "missing.json")), "No such file"),
    ):  # fmt: skip
        made = _sign(*args, stdin="not json" if args[0] == "payload" else None)
        assert made.returncode == 2, (args, made.stdout, made.stderr)
        assert made.stdout == "" and reason in made.stderr and "Traceback" not in made.stderr, (args, made.stderr)


def test_show_says_when_it_does_not_verify(tmp_path):
    private, _, _ = _key(tmp_path, "EdDSA")
    _, other_public, _ = _key(tmp_path, "EdDSA", name="other")
    envelope = _sign("count", "--private_key", private, "--device_id", "d", "--delta", "1", "--seq", "1").stdout
    shown = _sign("show", "--public_key", other_public, stdin=envelope)
    assert shown.returncode == 1 and json.loads(shown.stdout)["verifies"] is False
    assert _sign("show", "abc").returncode == 2


def test_the_worked_example_in_operations_md_is_the_tools_output(tmp_path):
    """The header and payload segments of the example do not depend on the key: the doc's must be
    what the documented command makes."""
    text = (ROOT / "docs" / "operations.md").read_text()
    command = re.search(r"python -m device\.sign count ((?:.*\\\n)*.*)\n", text).group(1).replace("\\", "").split()
    example = re.search(r"\n(eyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+)\.", text).group(1)
    private, _, _ = _key(tmp_path, "EdDSA")
    args = [private if a == "door.pem" else a for a in command]
    made = _sign("count", *args)
    assert made.returncode == 0, made.stderr
    assert made.stdout.rsplit(".", 1)[0] == example
