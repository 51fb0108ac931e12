"""How the long-running processes (the API, the bridge) write their logs: lines of text for a
terminal, or one JSON object per line, which Cloud Logging reads as a structured entry (its
`severity`, `message`, and the rest as the entry's fields) from a Cloud Run service or a VM's
Ops Agent.

    configure("info", "json")

The format's default is the OCCUPANCY_LOG_FORMAT environment variable (the API's image sets
json), else text.
"""

import datetime
import json
import logging
import os

FORMATS = ("text", "json")
ENV = "OCCUPANCY_LOG_FORMAT"
TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def default() -> str:
    value = os.environ.get(ENV, "text").strip().lower()
    return value if value in FORMATS else "text"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: severity (Cloud Logging's names), message (with the
    traceback, if any), logger, time (RFC 3339, UTC) and where in the code."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + self.formatException(record.exc_info)
        entry = {
            "severity": record.levelname if record.levelname != "WARN" else "WARNING",
            "message": message,
            "logger": record.name,
            "time": datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc).isoformat(),
            "logging.googleapis.com/sourceLocation": {
                "file": record.pathname,
                "line": record.lineno,
                "function": record.funcName,
            },
        }
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure(level: str, log_format: str) -> None:
    """The root logger at `level`, every record (those of libraries that propagate, like
    uvicorn's when it is given no logging configuration) in `log_format`."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
