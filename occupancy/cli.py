"""What every command line shares (pipeline, publisher, registry CLI, API): argparse value
types and the project to work on.

Beam-free, so that the device install can use them. Each rejects nan and inf,
which float() accepts and no option here means.
"""

import argparse
import math
import os
import re
from typing import Optional

# The project the local emulators use (local/stack.py).
EMULATOR_PROJECT = "demo-occupancy"
_TOPIC_PATH_RE = re.compile(r"^projects/([^/]+)/topics/([^/]+)$")
_TOPIC_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9._~+%-]{2,254}$")


class UsageError(Exception):
    """A command line that cannot be run as given (one `error:` line, exit code 2)."""


class NoProject(ValueError):
    """No project was given and none can be inferred."""


def resolve_project(project: Optional[str]) -> str:
    """--project, else $GOOGLE_CLOUD_PROJECT, else the emulator project when the Firestore
    emulator is set (FIRESTORE_EMULATOR_HOST); raises NoProject."""
    project = project or os.environ.get("GOOGLE_CLOUD_PROJECT")
    if project:
        return project
    if os.environ.get("FIRESTORE_EMULATOR_HOST"):
        return EMULATOR_PROJECT
    raise NoProject(
        "no project: pass --project or set GOOGLE_CLOUD_PROJECT (or FIRESTORE_EMULATOR_HOST to use the emulator)"
    )


def access_of_others(path: str) -> int:
    """The permission bits `path` gives its group and others (0: its owner's alone); OSError if
    it cannot be looked at. A secret (broker secret, private key) is refused unless 0, as ssh
    refuses a private key: whoever reads it can speak as its device."""
    return os.stat(path).st_mode & 0o077


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def non_negative_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def host_port(text: str) -> str:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return text


def is_topic_path(topic: str) -> bool:
    return _TOPIC_PATH_RE.match(topic) is not None


def topic_path(topic: str, project: Optional[str]) -> str:
    """projects/P/topics/T from a name and a project, or a full path as given; ValueError
    (NoProject without a project) with a one-line reason."""
    match = _TOPIC_PATH_RE.match(topic)
    if match:
        if project and project != match.group(1):
            raise ValueError(f"--topic {topic} is in project {match.group(1)}, not --project {project}")
        return topic
    if not _TOPIC_NAME_RE.match(topic):
        raise ValueError(f"invalid --topic {topic!r}: a topic name, or projects/P/topics/T")
    if not project:
        raise NoProject("no project: pass --project, a full --topic projects/P/topics/T, or set GOOGLE_CLOUD_PROJECT")
    return f"projects/{project}/topics/{topic}"
