"""Device identity: every message signed by its sender's own key, verified against the registry.

Pure checks of occupancy.authenticate first (no emulator), then the whole path on the emulators:
keys made by `python -m registry register --generate_key`, counts signed by the real
`python -m device.publisher`, forgeries sent by a plain Pub/Sub client holding nothing but
publish access to the topic, as an attacker with a leaked credential would.
"""

import base64
import datetime
import os
import subprocess
import sys
import time

import pytest

from adapters import registry
from adapters.registry import keys as registry_keys
from local import stack
from occupancy import authenticate, identity, registry_entries, wire
from tests.support import KEYS, REPO_ROOT, Heartbeats, realtime_values, register, wait_for_values, warm_up

T = 1_800_000_000_000_000


def _entry(keys, role=registry_entries.DOOR, trains=()):
    return registry_entries.DeviceEntry("t1", True, 0, keys=tuple(keys), role=role, trains=tuple(trains))


def _key(signer, name="k1", expires_us=0):
    return identity.PublicKey(name, signer.alg, identity.public_pem(signer._key), expires_us)


def _count(raw, device="d1"):
    return wire.Event(f"{device}:1", T, device_id=device, delta=1, seq=1, raw=raw)


def _reset(raw, train="t1"):
    return wire.Event(f"reset:{train}", T, kind=wire.RESET, train_id=train, raw=raw)


@pytest.fixture(scope="module")
def signers():
    return {
        name: identity.Signer(identity.generate_private_key(alg), kid)
        for name, alg, kid in (
            ("d1", "EdDSA", "d1/k1"),
            ("d2", "EdDSA", "d2/k1"),
            ("es", "ES256", "d1/k1"),
            ("rs", "RS256", "d1/k1"),
            ("ops", "EdDSA", "ops/k1"),
        )
    }


def test_a_count_is_accepted_only_signed_by_a_current_key_of_its_own_device(signers):
    check = authenticate.Authenticator().check
    payload = wire.encode_event("d1", 1, T, 1)[0]
    own = _entry([_key(signers["d1"])])
    signed = signers["d1"].sign(payload)
    assert check(_count(signed), own, T) is None
    for alg in ("es", "rs"):  # keys of devices moved from IoT Core
        assert check(_count(signers[alg].sign(payload)), _entry([_key(signers[alg])]), T) is None
    assert check(_count(payload), own, T)[0] == wire.UNSIGNED
    assert check(_count(signers["d2"].sign(payload)), own, T)[0] == wire.BAD_SIGNATURE  # another device's
    # d2's key under d1's kid: signed by the wrong key.
    forged = identity.Signer(signers["d2"]._key, "d1/k1").sign(payload)
    assert check(_count(forged), own, T)[0] == wire.BAD_SIGNATURE
    head, body, sig = signed.split(b".")
    assert check(_count(b".".join([head, body, sig[:-6]])), own, T)[0] == wire.BAD_SIGNATURE  # cut
    assert check(_count(b".".join([head, body, b"A" * len(sig)])), own, T)[0] == wire.BAD_SIGNATURE
    tampered = base64.urlsafe_b64encode(wire.encode_event("d1", 90, T, 1)[0]).rstrip(b"=")
    assert check(_count(b".".join([head, tampered, sig])), own, T)[0] == wire.BAD_SIGNATURE
    assert check(_count(signed), _entry([_key(signers["d1"], "k2")]), T)[0] == wire.UNKNOWN_KEY
    assert check(_count(signed), _entry([_key(signers["d1"], expires_us=T)]), T)[0] == wire.EXPIRED_KEY
    assert check(_count(signed), _entry([_key(signers["d1"], expires_us=T + 1)]), T) is None


def test_a_reset_is_accepted_only_from_a_control_key_for_its_train(signers):
    check = authenticate.Authenticator().check
    payload = wire.encode_reset("t1", T)[0]
    door = _entry([_key(signers["d1"])])
    control = _entry([_key(signers["ops"])], role=registry_entries.CONTROL, trains=["t1"])
    principals = {"d1": door, "ops": control}
    assert check(_reset(signers["ops"].sign(payload)), None, T, principals.get) is None
    assert check(_reset(signers["d1"].sign(payload)), None, T, principals.get)[0] == wire.BAD_SIGNATURE
    other_train = wire.encode_reset("t2", T)[0]
    assert check(_reset(signers["ops"].sign(other_train), "t2"), None, T, principals.get)[0] == wire.BAD_SIGNATURE
    everywhere = {"ops": _entry([_key(signers["ops"])], role=registry_entries.CONTROL, trains=["*"])}
    assert check(_reset(signers["ops"].sign(other_train), "t2"), None, T, everywhere.get) is None
    assert check(_reset(payload), None, T, principals.get)[0] == wire.UNSIGNED


def test_a_malformed_envelope_is_a_dead_letter_of_the_parser():
    for data in (b"eyJhbGciOiJub25lIn0.eyJ4IjoxfQ.c2ln", b"a.b.c", b"eyJhbGciOiJFZERTQSJ9.eyJ4IjoxfQ.c2ln"):
        with pytest.raises(wire.Rejected) as caught:
            wire.parse_message(data, "m", now_us=T, max_abs_delta=100, max_future_skew_s=300)
        assert caught.value.reason == wire.MALFORMED


def _registry_cli(*argv):
    return subprocess.run(
        [sys.executable, "-m", "registry", *argv],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ),
    )


def test_signed_end_to_end_forgeries_are_dead_letters_and_move_nothing(local_stack, tmp_path):
    client, fleet, start = local_stack
    register(client, {"ta": ["hb-a"], "tb": ["b1", "hb-b"]}, {"ta": 100, "tb": 100})
    key_path = tmp_path / "door.pem"
    made = _registry_cli("register", "door", "--train", "ta", "--generate_key", str(key_path))
    assert made.returncode == 0, made.stderr
    assert oct(os.stat(key_path).st_mode & 0o777) == "0o600"
    assert [k.key_id for k in registry_keys.list_keys(client, "devices", "door")] == ["k1"]
    process = start()
    warm_up(client, fleet, process, ["hb-a", "hb-b"])
    beats = Heartbeats(fleet, ["hb-a", "hb-b"])
    beats.start()
    publisher = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "device.publisher",
            "--device_id",
            "door",
            "--topic",
            fleet.topic,
            "--emulator",
            os.environ["PUBSUB_EMULATOR_HOST"],
            "--outbox",
            str(tmp_path / "outbox.sqlite"),
            "--private_key",
            str(key_path),
        ],
        cwd=REPO_ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        publisher.stdin.write(b"+5\n+2\n")
        publisher.stdin.flush()
        wait_for_values(client, {"ta": 7}, process)  # the real publisher's signed counts

        def forge(payload, **attributes):
            fleet.publish_raw(payload, **attributes)

        now = wire.now_us()
        count = lambda device, delta, seq: wire.encode_event(device, delta, now, seq)  # noqa: E731
        p, a = count("door", 90, 999_999)
        forge(KEYS.sign("b1", p), **a)  # b1's key, door's claim
        forge(identity.Signer(KEYS.signer("b1")._key, "door/k1").sign(p), **a)  # b1's key, door's kid
        forge(p, **a)  # unsigned
        signed = KEYS.sign("b1", wire.encode_event("b1", 3, now, 1)[0])
        forge(signed[:-5], **count("b1", 3, 1)[1])  # cut
        reset, reset_attributes = wire.encode_reset("ta", now)
        forge(KEYS.sign("b1", reset), **reset_attributes)  # a reset signed by a door key
        # An expired key, and a key removed while the pipeline runs.
        registry_keys.add_key(
            client,
            "devices",
            "b1",
            "old",
            KEYS.public_pem("hb-b"),
            datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc),
        )
        expired = identity.Signer(KEYS.signer("hb-b")._key, "b1/old")
        time.sleep(3.5)  # the pipeline's registry refresh (2 s) sees the new key
        forge(expired.sign(wire.encode_event("b1", 4, now, 2)[0]), **count("b1", 4, 2)[1])
        registry_keys.remove_key(client, "devices", "b1", "k1")
        time.sleep(3.5)
        forge(KEYS.sign("b1", wire.encode_event("b1", 6, now, 3)[0]), **count("b1", 6, 3)[1])
        registry.set_enabled(client, "devices", "door", False)
        time.sleep(3.5)
        publisher.stdin.write(b"+8\n")  # a disabled device, signed properly
        publisher.stdin.flush()
        reasons = [
            wire.BAD_SIGNATURE,
            wire.BAD_SIGNATURE,
            wire.UNSIGNED,
            wire.BAD_SIGNATURE,
            wire.BAD_SIGNATURE,
            wire.EXPIRED_KEY,
            wire.UNKNOWN_KEY,
            wire.UNKNOWN_DEVICE,
        ]
        stack.wait_for(
            lambda: len(list(client.collection("dead_letters").stream())) >= len(reasons), 60, what="the dead letters"
        )
        registry.set_enabled(client, "devices", "door", True)
        time.sleep(3.5)
        # A reset signed by the operator's control key applies; after the forged seq 999,999, the
        # door's honest counts still count.
        reset, reset_attributes = wire.encode_reset("ta", wire.now_us())
        forge(KEYS.sign_control(reset), **reset_attributes)
        time.sleep(1.5)
        publisher.stdin.write(b"+4\n")
        publisher.stdin.flush()
        wait_for_values(client, {"ta": 4, "tb": 0}, process)
    finally:
        beats.stop()
        publisher.kill()
        publisher.wait(10)
        publisher.stdin.close()
    letters = [d.to_dict() for d in client.collection("dead_letters").stream()]
    assert sorted(d["reason"] for d in letters) == sorted(reasons), [(d["reason"], d["detail"]) for d in letters]
    seen = client.collection("realtime").document("ta").get().to_dict()["devices_seen"]["door"]
    assert seen["seq"] < 100  # no forged seq moved the door's memory
    assert realtime_values(client)["tb"] == 0


def test_a_fleet_import_registers_each_devices_public_key(firestore_client, tmp_path):
    from adapters import fleet_import

    (tmp_path / "keys").mkdir()
    pem = identity.public_pem(identity.generate_private_key("ES256"))
    (tmp_path / "keys" / "a1.pem").write_text(pem)
    csv_file = tmp_path / "fleet.csv"
    csv_file.write_text(
        "train_id,capacity,name,device_id,door,public_key_file\nta,100,A,a1,car1,keys/a1.pem\nta,100,A,a2,car2,\n"
    )
    with open(csv_file) as f:
        trains, devices = fleet_import.read_csv(f, str(tmp_path))
    counts = fleet_import.import_fleet(firestore_client, "devices", "trains", trains, devices)
    assert counts["keys_registered"] == 1
    assert [(k.key_id, k.alg) for k in registry_keys.list_keys(firestore_client, "devices", "a1")] == [("k1", "ES256")]
    assert registry_keys.list_keys(firestore_client, "devices", "a2") == ()
    bad = tmp_path / "bad.csv"
    bad.write_text("train_id,capacity,name,device_id,door,public_key_file\ntb,10,,b1,,fleet.csv\n")
    with open(bad) as f:
        trains, devices = fleet_import.read_csv(f, str(tmp_path))
    with pytest.raises(registry_entries.RegistryConflict):
        fleet_import.import_fleet(firestore_client, "devices", "trains", trains, devices)
