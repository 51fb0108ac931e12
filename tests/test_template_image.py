"""The Flex Template's image and the deployment's Firestore indexes agree with the code:
templates/Dockerfile against setup.py (one Beam version), the launcher and worker in one
image, the files the launcher runs present where its environment says, pipeline/main.py
runnable as the launcher runs it, and deploy/firestore.indexes.json serving the queries the
API and the registry CLI make. The metadata: tests/test_template.py.
"""

import json
import pathlib
import re
import subprocess
import sys

import pytest

from tests.support import option_actions, setup_beam_version

REPO = pathlib.Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "templates" / "Dockerfile"
INDEXES = REPO / "deploy" / "firestore.indexes.json"


@pytest.fixture(scope="module")
def actions():
    return option_actions()


# --- Dockerfile -----------------------------------------------------------------


def _dockerfile():
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


def test_dockerfile_pins_the_beam_version_of_setup_py():
    lines = _dockerfile()
    args = dict(re.fullmatch(r"ARG (\w+)=(\S+)", ln).groups() for ln in lines if re.fullmatch(r"ARG \w+=\S+", ln))
    assert args["BEAM_VERSION"] == setup_beam_version() == "2.77.0"
    froms = [ln.split()[1] for ln in lines if ln.startswith("FROM ")]
    assert "apache/beam_python3.11_sdk:${BEAM_VERSION}" in froms
    assert args["LAUNCHER_IMAGE"].startswith("gcr.io/dataflow-templates-base/python311-template-launcher-base")
    # Nothing else names a Beam version.
    assert not re.search(r"\b2\.\d+\.\d+\b", "\n".join(ln for ln in lines if not ln.startswith("ARG BEAM_VERSION=")))


def test_dockerfile_is_launcher_and_worker_image():
    lines = _dockerfile()
    assert (
        "COPY --from=launcher /opt/google/dataflow/python_template_launcher "
        "/opt/google/dataflow/python_template_launcher"
    ) in lines
    assert lines[-1] == 'ENTRYPOINT ["/opt/apache/beam/boot"]'
    # Beam's boot from its SDK image; the packages from the lock, on the API's Python image.
    assert "COPY --from=beam /opt/apache/beam /opt/apache/beam" in lines
    assert "FROM apache/beam_python3.11_sdk:${BEAM_VERSION} AS beam" in lines
    froms = [ln for ln in lines if ln.startswith("FROM ")]
    api_base = next(ln for ln in (REPO / "api" / "Dockerfile").read_text().splitlines() if ln.startswith("FROM "))
    assert froms[-1] == api_base == "FROM python:3.11-slim"
    assert any(ln.startswith("RUN pip install") and "'.[pipeline]'" in ln for ln in lines)


def test_flex_template_files_exist_in_the_image_and_the_repo():
    lines = _dockerfile()
    workdir = [ln.split()[1] for ln in lines if ln.startswith("WORKDIR ")][-1]
    env = dict(re.fullmatch(r'ENV (\w+)="?([^"]*)"?', ln).groups() for ln in lines if ln.startswith("ENV "))
    # Where each copied repository path lands, relative to WORKDIR.
    copied = {}
    for line in lines:
        if line.startswith("COPY ") and "--from" not in line:
            *sources, dest = line.split()[1:]
            dest = dest.removeprefix("./").rstrip("/")
            for source in sources:
                copied[source] = dest if len(sources) == 1 and dest else source
    for var, expected in (
        ("FLEX_TEMPLATE_PYTHON_PY_FILE", "pipeline/main.py"),
        ("FLEX_TEMPLATE_PYTHON_SETUP_FILE", "setup.py"),
    ):
        path = env[var]
        assert path.startswith(workdir + "/"), (var, path)
        relative = path[len(workdir) + 1 :]
        assert relative == expected
        assert (REPO / relative).is_file()
        top = relative.split("/")[0]
        assert copied.get(top) == top, (var, copied)  # copied from the repo to the same place


def test_main_runs_as_a_script_like_the_launcher_runs_it(actions, tmp_path):
    # The launcher runs `python $FLEX_TEMPLATE_PYTHON_PY_FILE ...`, not `python -m`.
    out = subprocess.run(
        [sys.executable, str(REPO / "pipeline" / "main.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    for name in actions:
        assert f"--{name}" in out.stdout, name


# --- deploy/firestore.indexes.json ----------------------------------------------


def test_firestore_indexes_serve_per_train_history_and_exempt_timestamp(actions):
    spec = json.loads(INDEXES.read_text())
    history = actions["history_collection"].default
    composite = {
        (i["collectionGroup"], tuple((f["fieldPath"], f["order"]) for f in i["fields"])) for i in spec["indexes"]
    }
    assert (history, (("train", "ASCENDING"), ("timestamp", "DESCENDING"))) in composite
    assert (history, (("train", "ASCENDING"), ("timestamp", "ASCENDING"))) in composite
    exempt = {(o["collectionGroup"], o["fieldPath"]) for o in spec["fieldOverrides"] if o["indexes"] == []}
    assert (history, "timestamp") in exempt
    collections = {actions[f"{n}_collection"].default for n in ("realtime", "history", "trips")}
    assert {o["collectionGroup"] for o in spec["fieldOverrides"]} <= collections
    # registry health reads a train's newest trips: train ==, ended_at descending.
    trips = actions["trips_collection"].default
    assert (trips, (("train", "ASCENDING"), ("ended_at", "DESCENDING"))) in composite
