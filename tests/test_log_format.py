"""Logs as Cloud Logging reads them (occupancy.log_format): one JSON object per line with its
severity and message, from the running API (its own lines and uvicorn's access lines) and the
bridge; text stays the default."""

import json
import logging
import subprocess
import sys
import time

import httpx

from local import stack
from occupancy import log_format
from tests.support import serve_api


def test_a_record_with_an_error_is_one_json_object_with_its_severity_traceback_and_place():
    record = None
    try:
        raise ValueError("bad door")
    except ValueError:
        record = logging.LogRecord("occupancy.x", logging.ERROR, "/a/b.py", 12, "failed %s", ("d1",), sys.exc_info())
    entry = json.loads(log_format.JsonFormatter().format(record))
    assert entry["severity"] == "ERROR" and entry["message"].startswith("failed d1\nTraceback")
    assert "ValueError: bad door" in entry["message"] and entry["logger"] == "occupancy.x"
    assert entry["logging.googleapis.com/sourceLocation"]["line"] == 12 and entry["time"].endswith("+00:00")


def test_the_running_api_writes_every_line_as_json_its_access_lines_included(
    firestore_emulator, auth_emulator, tmp_path_factory
):
    process, base_url = serve_api(
        tmp_path_factory, {**firestore_emulator.env(), **auth_emulator.env()}, "--log_format=json"
    )
    try:
        assert httpx.get(f"{base_url}/v1/trains/nobody-{time.time_ns()}", timeout=30).status_code == 404
    finally:
        stack.stop_process(process)
    lines = [line for line in process.log_path.read_text().splitlines() if line.strip()]
    entries = [json.loads(line) for line in lines]  # every line, or this raises
    assert {"INFO"} <= {e["severity"] for e in entries}
    assert any("Serving project" in e["message"] for e in entries)
    assert any("GET /v1/trains/nobody-" in e["message"] and "404" in e["message"] for e in entries), entries[-5:]


def test_text_is_the_default_and_json_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv(log_format.ENV, raising=False)
    assert log_format.default() == "text"
    monkeypatch.setenv(log_format.ENV, "JSON")
    assert log_format.default() == "json"
    monkeypatch.setenv(log_format.ENV, "yaml")
    assert log_format.default() == "text"
    help_text = subprocess.run(
        [sys.executable, "-m", "bridge", "--help"], capture_output=True, text=True, timeout=60
    ).stdout
    assert "--log_format {text,json}" in help_text
