"""Start and stop the Google Cloud Pub/Sub and Firestore emulators for local runs and tests.

`gcloud ... emulators ... start` is a wrapper around a Java process: killing
its PID can leave the emulator running with its port taken, so each emulator
runs in a process group of its own and the whole group is stopped.
"""
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request

_LOGGER = logging.getLogger(__name__)

KINDS = {
    "pubsub": ("PUBSUB_EMULATOR_HOST", ["beta", "emulators", "pubsub", "start"]),
    "firestore": ("FIRESTORE_EMULATOR_HOST", ["emulators", "firestore", "start"]),
}


class EmulatorError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def is_up(host_port: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{host_port}/", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def check_prerequisites() -> None:
    """Clear errors for what a user must install first."""
    if not shutil.which("gcloud"):
        raise EmulatorError("gcloud not found: install the Google Cloud CLI "
                            "(see README, 'What you need first')")
    if not shutil.which("java"):
        raise EmulatorError("java not found: the emulators need a Java runtime 11+ "
                            "(e.g. apt-get install default-jre-headless)")


class Emulator:
    """One emulator process group on 127.0.0.1:<port>."""

    def __init__(self, kind: str, port: int = 0, project: str = "demo-occupancy"):
        self.kind = kind
        self.env_var, self._args = KINDS[kind]
        self.host_port = f"127.0.0.1:{port or free_port()}"
        self.project = project
        self._process = None
        self._log = None

    def start(self, timeout_s: float = 90.0) -> "Emulator":
        check_prerequisites()
        self._log = tempfile.NamedTemporaryFile(prefix=f"{self.kind}-emulator-", suffix=".log",
                                                delete=False)
        cmd = ["gcloud", *self._args, f"--host-port={self.host_port}", f"--project={self.project}",
               "--quiet"]
        if self.kind == "firestore":
            cmd.append("--database-mode=firestore-native")
        self._process = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while not is_up(self.host_port):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise EmulatorError(f"{self.kind} emulator did not start on {self.host_port}; "
                                    f"log: {self._log.name}\n{self.log_tail()}")
            time.sleep(0.3)
        _LOGGER.info("%s emulator up on %s", self.kind, self.host_port)
        return self

    def log_tail(self, lines: int = 20) -> str:
        try:
            with open(self._log.name, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except (OSError, AttributeError):
            return ""

    def stop(self) -> None:
        if self._process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._process.pid, signal.SIGTERM)
        try:
            self._process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait(timeout=5)
        # The Java child may outlive the wrapper for a moment: wait for the port to close.
        deadline = time.monotonic() + 15
        while is_up(self.host_port) and time.monotonic() < deadline:
            time.sleep(0.2)
        self._process = None

    def reset(self) -> None:
        """Deletes all Firestore data (Firestore emulator only)."""
        request = urllib.request.Request(
            f"http://{self.host_port}/emulator/v1/projects/{self.project}/databases/(default)/documents",
            method="DELETE")
        urllib.request.urlopen(request, timeout=10).close()

    def env(self) -> dict:
        return {self.env_var: self.host_port}
