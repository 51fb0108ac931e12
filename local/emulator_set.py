"""The emulators a local run needs (Pub/Sub, Firestore, Firebase Auth): each reused when its
environment variable names one that answers, else started, in parallel, and stopped again by
`stop`."""

import os
import threading
from typing import Callable, List

from local.auth_emulator import AuthEmulator
from local.emulators import Emulator, is_up

ENV_VARS = ("PUBSUB_EMULATOR_HOST", "FIRESTORE_EMULATOR_HOST", "FIREBASE_AUTH_EMULATOR_HOST")


class EmulatorSet:
    """Starts what is not running; `say` reports each step. An emulator is recorded as started
    before it is up, so that `stop` after an interruption stops it too."""

    def __init__(self, project: str, say: Callable[[str], None]):
        self.project, self.say = project, say
        self.started: List[Emulator] = []
        self._threads: List[threading.Thread] = []

    def start(self) -> None:
        wanted = []
        for emulator in (
            Emulator("pubsub", project=self.project),
            Emulator("firestore", project=self.project),
            AuthEmulator(project=self.project),
        ):
            host = os.environ.get(emulator.env_var)
            if host and is_up(host):
                self.say(f"reusing the {emulator.kind} emulator at {host} ({emulator.env_var})")
                continue
            if host:
                self.say(f"{emulator.env_var}={host} does not answer: starting a new {emulator.kind} emulator")
            wanted.append(emulator)
        if not wanted:
            return
        self.say("starting emulators: " + ", ".join(e.kind for e in wanted) + " (takes a few seconds)...")
        errors: list = []
        for emulator in wanted:
            # In parallel: each one is a JVM that takes seconds to come up.
            thread = threading.Thread(target=_start_one, args=(emulator, errors), daemon=True)
            self.started.append(emulator)
            self._threads.append(thread)
            thread.start()
        for thread in self._threads:
            while thread.is_alive():
                thread.join(0.2)  # a timed join keeps Ctrl-C responsive
        if errors:
            raise errors[0]
        for emulator in wanted:
            os.environ[emulator.env_var] = emulator.host_port
            self.say(f"{emulator.kind} emulator up: {emulator.env_var}={emulator.host_port}")

    @staticmethod
    def env() -> dict:
        """The variables that point a child process at the emulators."""
        return {name: os.environ[name] for name in ENV_VARS}

    def stop(self) -> None:
        for thread in self._threads:
            thread.join(120)  # an emulator still starting must be up before it can be stopped
        for emulator in self.started:
            self.say(f"stopping the {emulator.kind} emulator at {emulator.host_port}...")
            emulator.stop()


def _start_one(emulator: Emulator, errors: list) -> None:
    try:
        emulator.start()
    except Exception as e:  # noqa: BLE001 - re-raised in the main thread
        errors.append(e)
