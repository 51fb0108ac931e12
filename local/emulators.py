"""Start and stop the Google Cloud Pub/Sub and Firestore emulators for local runs and tests.

`gcloud ... emulators ... start` is a wrapper around a Java process: killing
its PID can leave the emulator running with its port taken, so each emulator
runs in a process group of its own and the whole group is stopped.
"""

import logging
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from typing import Callable, Tuple

from local.processes import stop_group

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


PORT_ATTEMPTS = 3


def start_on_a_port(start: Callable[[int], bool], port: int = 0, attempts: int = PORT_ATTEMPTS) -> Tuple[int, bool]:
    """Starts a server with `start(port)` (True: it serves; False: it exited) on `port`, or on a
    free port where `port` is 0 or taken, and on another free port while it exits because its
    port was taken between the pick and its bind (another process, or the local end of a
    connection). Returns (the port, whether the server serves): False when it exited for
    another reason, or on each of `attempts` ports."""
    for attempt in range(attempts):
        if not port or not port_free(port):
            port = free_port()
        if start(port):
            return port, True
        if port_free(port) or attempt == attempts - 1:
            return port, False
        _LOGGER.warning("Port %s was taken as the server started: trying another", port)
    return port, False


def port_free(port: int) -> bool:
    """Whether 127.0.0.1:port can be listened on now."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def is_up(host_port: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{host_port}/", timeout=2) as response:
            return response.status == 200
    except urllib.error.HTTPError as e:  # it answers, but not yet (or not) as up: its socket closed
        e.close()
        return False
    except OSError:
        return False


def file_tail(path, lines: int = 20) -> str:
    """The last lines of a log file, or "" if there is none (yet)."""
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except (OSError, TypeError):
        return ""


def check_prerequisites() -> None:
    """Clear errors for what a user must install first."""
    if not shutil.which("gcloud"):
        raise EmulatorError("gcloud not found: install the Google Cloud CLI (see README, 'What you need first')")
    if not shutil.which("java"):
        raise EmulatorError(
            "java not found: the emulators need a Java runtime 11+ (e.g. apt-get install default-jre-headless)"
        )


class Emulator:
    """One emulator process group on 127.0.0.1:<port>."""

    def __init__(self, kind: str, port: int = 0, project: str = "demo-occupancy", rules: str = None):
        self.kind = kind
        self.rules = rules  # Firestore only: a security rules file (else everything is allowed)
        self.env_var, self._args = KINDS[kind]
        self.host_port = f"127.0.0.1:{port or free_port()}"
        self.project = project
        self._process = None
        self._log = None

    def start(self, timeout_s: float = 90.0) -> "Emulator":
        check_prerequisites()
        self._log = tempfile.NamedTemporaryFile(prefix=f"{self.kind}-emulator-", suffix=".log", delete=False)
        cmd = ["gcloud", *self._args, f"--host-port={self.host_port}", f"--project={self.project}", "--quiet"]
        if self.kind == "firestore":
            cmd.append("--database-mode=firestore-native")
            if self.rules:
                cmd.append(f"--rules={self.rules}")
        self._process = subprocess.Popen(
            cmd, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + timeout_s
        while not is_up(self.host_port):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise EmulatorError(
                    f"{self.kind} emulator did not start on {self.host_port}; log: {self._log.name}\n{self.log_tail()}"
                )
            time.sleep(0.3)
        _LOGGER.info("%s emulator up on %s", self.kind, self.host_port)
        return self

    def log_tail(self, lines: int = 20) -> str:
        return file_tail(getattr(self._log, "name", None), lines)

    def stop(self) -> None:
        """Stops the wrapper and its JVM: returns when none of the group is left."""
        if self._process is None:
            return
        stop_group(self._process, timeout_s=15)
        self._process = None
        if self._log is not None:
            self._log.close()  # the file stays, for log_tail and for whoever reads it after a failure

    def reset(self) -> None:
        """Deletes all Firestore data (Firestore emulator only)."""
        request = urllib.request.Request(
            f"http://{self.host_port}/emulator/v1/projects/{self.project}/databases/(default)/documents",
            method="DELETE",
        )
        urllib.request.urlopen(request, timeout=10).close()

    def env(self) -> dict:
        return {self.env_var: self.host_port}
