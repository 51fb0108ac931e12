"""The Firebase Authentication emulator (from npm's firebase-tools) for local runs and tests.

`make install-firebase` puts firebase-tools under .local/firebase-tools; the
emulator runs offline and issues real (unsigned) ID tokens that firebase-admin
accepts when FIREBASE_AUTH_EMULATOR_HOST is set. Like the gcloud emulators it
runs in a process group of its own (firebase-tools starts a Java-free node
process tree) and the whole group is stopped.
"""

import json
import logging
import os
import pathlib
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from typing import Optional, Tuple

from local.emulators import EmulatorError, file_tail, free_port, is_up
from local.processes import stop_group

_LOGGER = logging.getLogger(__name__)

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIREBASE = ROOT / ".local" / "firebase-tools" / "node_modules" / ".bin" / "firebase"
ENV_VAR = "FIREBASE_AUTH_EMULATOR_HOST"


def firebase_path() -> pathlib.Path:
    if not FIREBASE.exists():
        raise EmulatorError(
            f"firebase-tools not found at {FIREBASE}: run 'make install-firebase' "
            "(needs node and npm, e.g. apt-get install nodejs npm)"
        )
    return FIREBASE


class AuthEmulator:
    """The Auth emulator on 127.0.0.1:<port>, with helpers to create users and sign in."""

    def __init__(self, project: str = "demo-occupancy", port: int = 0):
        self.project = project
        self.host_port = f"127.0.0.1:{port or free_port()}"
        self.kind = "auth"
        self.env_var = ENV_VAR
        self._process = None
        self._dir = None
        self._log = None

    def start(self, timeout_s: float = 90.0) -> "AuthEmulator":
        firebase = firebase_path()
        self._dir = tempfile.TemporaryDirectory(prefix="auth-emulator-")
        host, port = self.host_port.split(":")
        config = {
            "emulators": {
                "auth": {"host": host, "port": int(port)},
                "ui": {"enabled": False},
                "hub": {"host": host, "port": free_port()},
                "logging": {"host": host, "port": free_port()},
            }
        }
        pathlib.Path(self._dir.name, "firebase.json").write_text(json.dumps(config))
        self._log = open(os.path.join(self._dir.name, "emulator.log"), "wb")
        env = dict(os.environ, FIREBASE_CLI_DISABLE_UPDATE_CHECK="true", CI="true")
        self._process = subprocess.Popen(
            [str(firebase), "emulators:start", "--only", "auth", "--project", self.project],
            cwd=self._dir.name,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        while not is_up(self.host_port):
            if self._process.poll() is not None or time.monotonic() > deadline:
                tail = self.log_tail()
                self.stop()
                raise EmulatorError(f"Auth emulator did not start on {self.host_port}:\n{tail}")
            time.sleep(0.3)
        _LOGGER.info("Auth emulator up on %s", self.host_port)
        return self

    def log_tail(self, lines: int = 20) -> str:
        return file_tail(getattr(self._log, "name", None), lines)

    def stop(self) -> None:
        if self._process is not None:
            stop_group(self._process, timeout_s=15)
            self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def env(self) -> dict:
        return {self.env_var: self.host_port}

    # ---- users (the emulator's Identity Toolkit REST API, as a browser calls it) ----

    def _call(self, path: str, body: dict, owner: bool = False) -> dict:
        url = f"http://{self.host_port}/identitytoolkit.googleapis.com/v1/{path}?key=emulator"
        headers = {"Content-Type": "application/json"}
        if owner:
            headers["Authorization"] = "Bearer owner"  # the emulator's admin token
        request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as e:
            raise EmulatorError(f"Auth emulator {path}: {e.code} {e.read().decode(errors='replace')}") from None

    def sign_up(self, email: str, password: str) -> Tuple[str, str]:
        """Creates a user; returns (uid, ID token)."""
        data = self._call("accounts:signUp", {"email": email, "password": password, "returnSecureToken": True})
        return data["localId"], data["idToken"]

    def sign_in(self, email: str, password: str) -> str:
        """A fresh ID token (carrying the user's current custom claims)."""
        data = self._call(
            "accounts:signInWithPassword", {"email": email, "password": password, "returnSecureToken": True}
        )
        return data["idToken"]

    def lookup(self, email: str) -> str:
        """The uid of the user with this email."""
        data = self._call(f"projects/{self.project}/accounts:lookup", {"email": [email]}, owner=True)
        return data["users"][0]["localId"]

    def revoke(self, uid: str) -> None:
        """Revokes the user's tokens issued until now (what `auth.revoke_refresh_tokens` does)."""
        import time

        self._call(
            f"projects/{self.project}/accounts:update",
            {"localId": uid, "validSince": str(int(time.time()))},
            owner=True,
        )

    def set_claims(self, uid: str, claims: Optional[dict]) -> None:
        self._call(
            f"projects/{self.project}/accounts:update",
            {"localId": uid, "customAttributes": json.dumps(claims or {})},
            owner=True,
        )
