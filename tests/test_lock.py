"""requirements/api.lock and requirements/pipeline.lock, the images' exact packages (make lock):
current with setup.py, complete, used by api/Dockerfile and templates/Dockerfile with hashes
required; every package of the API's a wheel for its platform matching its hash."""

import importlib.metadata
import pathlib
import re
import shutil
import subprocess
import sys

import pytest
from packaging.requirements import Requirement

REPO = pathlib.Path(__file__).resolve().parent.parent
LOCK = REPO / "requirements" / "api.lock"
# Each locked extra, the packages its lock must hold at least, and the image that installs it.
LOCKED = {
    "api": ({"fastapi", "prometheus-client"}, REPO / "api" / "Dockerfile"),
    "pipeline": ({"apache-beam", "google-cloud-firestore", "scikit-learn"}, REPO / "templates" / "Dockerfile"),
}
UV = pathlib.Path(sys.executable).parent / "uv"
# The image's interpreter and platform (python:3.11-slim: glibc, x86_64); pip wants every
# manylinux tag it accepts named.
PLATFORMS = [
    *(f"manylinux_2_{minor}_x86_64" for minor in (28, 27, 26, 24, 17, 12, 5)),
    "manylinux2014_x86_64",
    "manylinux2010_x86_64",
    "manylinux1_x86_64",
    "linux_x86_64",
    "any",
]


def pins(text: str) -> dict:
    """name -> (version, [hashes]) of a lock file."""
    out, name = {}, None
    for line in text.splitlines():
        pinned = re.match(r"^([A-Za-z0-9_.-]+)==(\S+)", line)
        if pinned:
            name = pinned.group(1).lower().replace("_", "-")
            out[name] = (pinned.group(2), [])
        for digest in re.findall(r"--hash=sha256:([0-9a-f]{64})", line):
            out[name][1].append(digest)
    return out


@pytest.mark.parametrize("extra", sorted(LOCKED))
def test_the_lock_is_what_make_lock_resolves_from_setup_py_now(tmp_path, extra):
    """uv keeps the pins of the file it writes over while they still satisfy setup.py: resolving
    again over a copy gives the same pins, unless setup.py asks for something the lock lacks."""
    lock = REPO / "requirements" / f"{extra}.lock"
    copy = tmp_path / lock.name
    shutil.copy(lock, copy)
    command = [str(UV), "pip", "compile", "setup.py", "--extra", extra, "--generate-hashes"]
    command += ["--python-version", "3.11", "--python-platform", "x86_64-manylinux_2_28", "--no-header"]
    done = subprocess.run([*command, "--quiet", "-o", str(copy)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    locked, resolved = pins(lock.read_text()), pins(copy.read_text())
    assert {k: v[0] for k, v in resolved.items()} == {k: v[0] for k, v in locked.items()}, "run make lock"


def requirements_of(extra: str) -> list:
    """setup.py's `extra`, as the installed project's metadata declares it."""
    declared = map(Requirement, importlib.metadata.requires("train-occupancy"))
    return [r for r in declared if r.marker is not None and r.marker.evaluate({"extra": extra})]


@pytest.mark.parametrize("extra", sorted(LOCKED))
def test_every_requirement_of_setup_py_is_pinned_within_its_range_with_hashes(extra):
    locked = pins((REPO / "requirements" / f"{extra}.lock").read_text())
    assert locked and all(hashes for _, hashes in locked.values())
    wanted = requirements_of(extra)
    assert LOCKED[extra][0] <= {r.name.lower() for r in wanted}
    for requirement in wanted:
        name = requirement.name.lower().replace("_", "-")
        assert name in locked, name
        assert requirement.specifier.contains(locked[name][0], prereleases=True), (requirement, locked[name])


def test_every_locked_package_is_a_wheel_for_the_image_matching_its_hash(tmp_path):
    """What `pip install --require-hashes --only-binary=:all:` in api/Dockerfile will fetch."""
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:"]
    command += [f"--platform={p}" for p in PLATFORMS]
    command += [
        "--python-version=3.11",
        "--implementation=cp",
        "--require-hashes",
        "-r",
        str(LOCK),
        "-d",
        str(tmp_path),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(list(tmp_path.glob("*.whl"))) == len(pins(LOCK.read_text()))


@pytest.mark.parametrize("extra", sorted(LOCKED))
def test_each_image_installs_its_lock_with_hashes_then_the_project_without_resolving(extra):
    text = LOCKED[extra][1].read_text().replace("\\\n", " ")
    steps = [line for line in text.splitlines() if line.startswith(("RUN ", "COPY "))]
    lock, project = (
        next(i for i, s in enumerate(steps) if s.startswith("RUN ") and k in s)
        for k in (f"requirements/{extra}.lock", f"'.[{extra}]'")
    )
    assert "--require-hashes" in steps[lock], steps[lock]
    if extra == "api":  # the pipeline's google-apitools (Beam's pin) is published as a source archive only
        assert "--only-binary=:all:" in steps[lock], steps[lock]
    assert "--no-deps" in steps[project] and "pip check" in steps[project], steps[project]
    # pip check reads install_requires only (empty): the extra is checked against what is installed.
    assert f"python requirements/check_extra.py {extra}" in steps[project], steps[project]
    # The lock is installed before the code is copied: a change of code reuses the packages' layer.
    assert lock < next(i for i, s in enumerate(steps) if s.startswith("COPY occupancy"))


@pytest.mark.parametrize("extra", sorted(LOCKED))
def test_the_images_extra_check_passes_where_the_extra_is_installed(extra):
    done = subprocess.run([sys.executable, str(REPO / "requirements" / "check_extra.py"), extra], capture_output=True)
    assert done.returncode == 0, done.stderr


def test_the_extra_check_names_what_is_missing_or_unknown():
    """apache-beam's `interactive` extra (IPython and more) is not installed here."""
    check = [sys.executable, str(REPO / "requirements" / "check_extra.py")]
    done = subprocess.run([*check, "interactive", "--distribution", "apache-beam"], capture_output=True, text=True)
    assert done.returncode == 1 and "ipython" in done.stderr and "is not installed" in done.stderr
    done = subprocess.run([*check, "no-such-extra"], capture_output=True, text=True)
    assert done.returncode == 1 and "no requirement for the extra 'no-such-extra'" in done.stderr
