"""Start and stop a mosquitto MQTT broker (Debian's package) for local runs and tests.

Its configuration is production's (occupancy.mqtt.broker_config: no anonymous clients, a
client's id its username, no retained messages, bounded packets and queues), on 127.0.0.1
only, with its queues on disk (persistence), and with `tls` a TLS listener as devices reach it
in production. It takes its users and ACL from the files `python -m registry mqtt
sync` writes (occupancy/mqtt.py). `reload()` is what that sync does in production: SIGHUP,
which makes mosquitto re-read both files and disconnect clients no longer allowed.
`Broker(user="mosquitto")`, started as root, runs it as Debian's unit does: mosquitto drops
to that user before it reads the password and ACL files.
Production settings (TLS on 8883, sizes): docs/operations.md, "MQTT devices".
"""

import getpass
import grp
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from local.emulators import file_tail, free_port
from local.processes import stop_group

_LOGGER = logging.getLogger(__name__)

# What mosquitto 2.0 logs (log_type information) as it re-reads its files on SIGHUP.
_RELOADING = "Reloading config."


class BrokerError(RuntimeError):
    pass


def mosquitto_path() -> str:
    path = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None)
    if not path:
        raise BrokerError(
            "mosquitto not found: the MQTT broker comes from Debian's packages "
            "(make check-prereqs installs it as root; else: sudo apt-get install mosquitto)"
        )
    return path


def _account(user: str) -> pwd.struct_passwd:
    """The account mosquitto is to drop to, if this process can start it so (as root)."""
    try:
        account = pwd.getpwnam(user)
    except KeyError:
        raise BrokerError(
            f"no user {user!r}: Debian's mosquitto package creates the user mosquitto "
            f"(make install-broker, as root; else: sudo apt-get install mosquitto)"
        ) from None
    if os.geteuid() != 0 and account.pw_uid != os.geteuid():
        raise BrokerError(f"mosquitto can drop to the user {user!r} only when started as root, as Debian's unit does")
    return account


def _reachable(path: str, account: pwd.struct_passwd) -> bool:
    """Whether `account` may enter every directory from / to `path` (search permission)."""
    groups = {account.pw_gid} | {g.gr_gid for g in grp.getgrall() if account.pw_name in g.gr_mem}
    path = os.path.abspath(path)
    while True:
        info = os.stat(path)
        bit = 0o100 if info.st_uid == account.pw_uid else 0o010 if info.st_gid in groups else 0o001
        if not info.st_mode & bit:
            return False
        if path == os.path.dirname(path):
            return True
        path = os.path.dirname(path)


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


class Broker:
    """One mosquitto process on 127.0.0.1:<port>, its files in a directory of its own."""

    def __init__(self, port: int = 0, directory: str = None, autosave_s: int = 2, user: str = None, tls=None):
        """`user`: the user mosquitto drops to, as Debian's unit runs it (started as root; the
        config says `user mosquitto`). Then `directory` is laid out like Debian's: it and the
        password and ACL files are root:<the user's group>, 0750 and 0640 (as /etc/mosquitto),
        the queues, log and pid file in `directory`/run, the user's own (as /var/lib/mosquitto).
        None: the current user, who owns everything, as before. `tls`: an occupancy.mqtt.BrokerTls
        (its port 0: a free one), the devices' TLS listener on 127.0.0.1 beside the plain one."""
        from occupancy import mqtt

        self.port = port or free_port()
        self.tls = tls._replace(port=tls.port or free_port(), host="127.0.0.1") if tls else None
        self._mqtt = mqtt
        self.host_port = f"127.0.0.1:{self.port}"
        self.directory = directory or tempfile.mkdtemp(prefix="mosquitto-")
        self.user = user or getpass.getuser()
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        run_dir, account = self.directory, _account(user) if user else None
        if account:
            run_dir = os.path.join(self.directory, "run")
            os.makedirs(run_dir, mode=0o700, exist_ok=True)
            os.chown(run_dir, account.pw_uid, account.pw_gid)
            os.chown(self.directory, -1, account.pw_gid)
            os.chmod(self.directory, 0o750)
            if not _reachable(run_dir, account):
                raise BrokerError(f"the user {user} cannot enter a directory on the way to {run_dir}")
        self.password_file = os.path.join(self.directory, "passwords")
        self.acl_file = os.path.join(self.directory, "acl")
        self.pid_file = os.path.join(run_dir, "mosquitto.pid")
        self.log_file = os.path.join(run_dir, "mosquitto.log")
        self._persistence = run_dir
        self._autosave_s = autosave_s
        self._process = None
        for path in (self.password_file, self.acl_file):
            if not os.path.exists(path):
                with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "w"):
                    pass
                if account:
                    os.chown(path, -1, account.pw_gid)
                    os.chmod(path, 0o640)

    def _config(self) -> str:
        path = os.path.join(self.directory, "mosquitto.conf")
        with open(path, "w") as f:
            f.write(self._mqtt.broker_config(self.password_file, self.acl_file, port=self.port, tls=self.tls))
            f.write(f"""# Where this broker keeps its files (local/broker.py)
user {self.user}
persistence true
persistence_location {self._persistence}/
autosave_interval {self._autosave_s}
pid_file {self.pid_file}
log_dest file {self.log_file}
log_type error
log_type warning
log_type notice
log_type information
connection_messages true
""")
        return path

    # `user`: mosquitto started as root drops to it; without one, to the user "mosquitto", who
    # may not write a directory of the current user's.

    def start(self, timeout_s: float = 15.0) -> "Broker":
        config = self._config()
        self._process = subprocess.Popen(
            [mosquitto_path(), "-c", config],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        while not _accepts(self.port):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise BrokerError(f"mosquitto did not start on {self.host_port}:\n{self.log_tail()}")
            time.sleep(0.05)
        _LOGGER.info("mosquitto up on %s (%s)", self.host_port, self.directory)
        return self

    def set_users(self, users) -> None:
        """Writes the password and ACL files for `users` (occupancy.mqtt.BrokerUser) and reloads:
        what `mqtt sync` does from the registry, for tests that need no registry."""
        from occupancy import mqtt

        passwords, acl = mqtt.broker_files(users)
        for path, text in ((self.password_file, passwords), (self.acl_file, acl)):
            with open(path, "w") as f:
                f.write(text)
        self.reload()

    def reload(self) -> None:
        """Re-reads the password and ACL files (what `mqtt sync --pid_file` does), and returns
        once the broker has: SIGHUP is asynchronous."""
        if self._process is not None:
            before = self.reloads()
            self._process.send_signal(signal.SIGHUP)
            self.wait_reloaded(before)

    def reloads(self) -> int:
        """How many times the broker has re-read its files (its log says so as it starts to)."""
        try:
            with open(self.log_file, errors="replace") as f:
                return sum(_RELOADING in line for line in f)
        except FileNotFoundError:
            return 0

    def wait_reloaded(self, before: int, timeout_s: float = 10.0) -> None:
        """Waits until the broker has reloaded since `reloads()` was `before`. mosquitto logs
        the line and reads the files in the same turn of its one loop, so a client that
        connects after the line is checked against the new files."""
        deadline = time.monotonic() + timeout_s
        while self.reloads() <= before:
            if time.monotonic() > deadline:
                raise BrokerError(f"mosquitto did not reload within {timeout_s:g}s:\n{self.log_tail()}")
            time.sleep(0.05)

    def restart(self) -> None:
        """Stops (SIGTERM: mosquitto saves its queues) and starts again on the same port."""
        self.stop()
        self.start()

    def kill(self) -> None:
        """SIGKILL: what a crash leaves (queues since the last autosave are lost)."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        return file_tail(self.log_file, lines)

    def stop(self) -> None:
        if self._process is None:
            return
        stop_group(self._process, timeout_s=10)
        self._process = None
