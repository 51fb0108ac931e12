"""What `make run` prints: lines that survive a reader who has gone (`make run | head`)."""

import contextlib
import os
import pathlib
import sys

CLEAR = "\x1b[H\x1b[2J"


class OutputGone(Exception):
    """stdout is a pipe whose reader has gone: nobody watches any more, so the demo stops."""


_output = {"broken": False}


def show(text: str = "") -> None:
    """print(), unless stdout is gone: then OutputGone once, and silence after (the cleanup's own
    messages must not raise again, or processes would be left behind)."""
    if _output["broken"]:
        return
    try:
        print(text, flush=True)
    except (BrokenPipeError, ValueError, OSError):
        _output["broken"] = True
        # Python would report the unflushed buffer at exit once more: point stdout at nothing.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise OutputGone() from None


def say(message: str) -> None:
    with contextlib.suppress(OutputGone):
        show(f"[demo] {message}")


def relative(path: pathlib.Path) -> str:
    """`path` from the current directory when it is below it (shorter to read), else whole."""
    with contextlib.suppress(ValueError):
        return str(path.relative_to(pathlib.Path.cwd()))
    return str(path)
