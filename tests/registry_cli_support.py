"""Helpers of the registry CLI's tests: run it in-process, read its documents back."""

import datetime

from registry import __main__ as cli

DEVICE_FIELDS = {"device_id", "train_id", "door", "enabled", "registered_at", "updated_at", "health"}
TRAIN_FIELDS = {"train_id", "capacity", "name", "updated_at"}


def run(capsys, *argv):
    """Runs the CLI in-process; returns (exit code, stdout, stderr)."""
    capsys.readouterr()
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def device_doc(client, device_id, collection="devices"):
    snapshot = client.collection(collection).document(device_id).get()
    return snapshot.to_dict() if snapshot.exists else None


def train_doc(client, train_id):
    snapshot = client.collection("trains").document(train_id).get()
    return snapshot.to_dict() if snapshot.exists else None


def assert_usage_error(code, out, err, *fragments):
    """Exit 2, nothing on stdout, one `error: ...` line on stderr that names the problem."""
    assert code == 2
    assert out == ""
    assert err.startswith("error: ") and err.endswith("\n") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err


def is_timestamp(value):
    return isinstance(value, datetime.datetime) and value.tzinfo is not None


def write_csv(tmp_path, rows, header="train_id,capacity,name,device_id,door"):
    path = tmp_path / "fleet.csv"
    path.write_text("\n".join([header] + rows) + "\n", encoding="utf-8")
    return str(path)
