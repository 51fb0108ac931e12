"""What every command line shares (pipeline, publisher, registry CLI, API): argparse value
types and the project to work on.

Beam-free, so that the device install can use them. Each rejects nan and inf,
which float() accepts and no option here means.
"""
import argparse
import math
import os
from typing import Optional

# The project the local emulators use (local/stack.py).
EMULATOR_PROJECT = "demo-occupancy"


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
    raise NoProject("no project: pass --project or set GOOGLE_CLOUD_PROJECT "
                    "(or FIRESTORE_EMULATOR_HOST to use the emulator)")


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
