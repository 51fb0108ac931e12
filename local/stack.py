"""The local stack shared by `make run` and the end-to-end tests: Pub/Sub resources
and the pipeline as a subprocess on the BundleBasedDirectRunner.

A streaming DirectRunner run cannot be waited on with a timeout, so the pipeline
runs as a child process in its own process group and is stopped with a signal.
"""

import contextlib
import os
import signal
import subprocess
import sys
import time
from typing import Optional

from google.api_core import exceptions as gexc

from local.processes import stop_group

PROJECT = "demo-occupancy"


def topic_path(project: str, name: str) -> str:
    return f"projects/{project}/topics/{name}"


def subscription_path(project: str, name: str) -> str:
    return f"projects/{project}/subscriptions/{name}"


def ensure_topic(project: str, topic: str, subscriptions=()) -> None:
    """Creates the topic and its subscriptions if they do not exist (needs PUBSUB_EMULATOR_HOST or ADC)."""
    from google.cloud import pubsub_v1

    publisher = pubsub_v1.PublisherClient()
    with contextlib.suppress(gexc.AlreadyExists):
        publisher.create_topic(name=topic_path(project, topic))
    subscriber = pubsub_v1.SubscriberClient()
    with subscriber:
        for name in subscriptions:
            with contextlib.suppress(gexc.AlreadyExists):
                subscriber.create_subscription(
                    name=subscription_path(project, name), topic=topic_path(project, topic), ack_deadline_seconds=60
                )


def pipeline_command(project: str, subscription: str, *extra_args: str) -> list:
    return [
        sys.executable,
        "-m",
        "pipeline.main",
        "--runner=BundleBasedDirectRunner",
        "--streaming",
        f"--project={project}",
        f"--input_subscription={subscription_path(project, subscription)}",
        *extra_args,
    ]


def bridge_command(
    project: str, broker: str, secret_file: str, topic: str, emulator: str, health_port: int, *extra_args: str
) -> list:
    """`python -m bridge` from the broker (host:port) to `topic` on the Pub/Sub emulator at `emulator`."""
    return [
        sys.executable,
        "-m",
        "bridge",
        "--broker",
        broker,
        "--secret_file",
        secret_file,
        "--topic",
        topic,
        "--project",
        project,
        "--emulator",
        emulator,
        "--health_port",
        str(health_port),
        *extra_args,
    ]


def start_pipeline(
    project: str, subscription: str, *extra_args: str, env: dict = None, log_path: str = None
) -> subprocess.Popen:
    """Starts `python -m pipeline.main` on the local runner in its own process group."""
    return _start_in_group(pipeline_command(project, subscription, *extra_args), env, log_path, subprocess.DEVNULL)


def _start_in_group(command: list, env: Optional[dict], log_path: Optional[str], no_log) -> subprocess.Popen:
    """A child leading its own process group, output appended to log_path (else to `no_log`)."""
    full_env = dict(os.environ, **(env or {}))
    full_env.setdefault("PYTHONUNBUFFERED", "1")
    log = open(log_path, "ab") if log_path else no_log
    try:
        return subprocess.Popen(
            command,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    finally:
        if log_path:
            log.close()


def stop_process(process: subprocess.Popen, sig=signal.SIGTERM, timeout_s: float = 20) -> None:
    """Stops a child started in its own process group, and everything it started."""
    stop_group(process, sig, timeout_s)


def wait_for(predicate, timeout_s: float, interval_s: float = 0.2, what: str = "condition"):
    """Polls `predicate` until it returns a truthy value; raises TimeoutError with `what`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(interval_s)


# ---- the API (python -m api) ---------------------------------------------------------

# The operator account `make run` and `make api` create on the Auth emulator.
DEMO_OPERATOR = ("operator@example.com", "operator-password")


def start_api(project: str, port: int, *extra_args: str, env: dict = None, log_path: str = None) -> subprocess.Popen:
    """Starts `python -m api` on 127.0.0.1:port in its own process group (output to log_path,
    else to this process's own stdout)."""
    return _start_in_group(
        [sys.executable, "-m", "api", "--host", "127.0.0.1", "--port", str(port), "--project", project, *extra_args],
        env,
        log_path,
        None,
    )


def start_command(command: list, log_path: str, env: dict = None) -> subprocess.Popen:
    """Starts any command in its own process group, output appended to log_path."""
    return _start_in_group(command, env, log_path, subprocess.DEVNULL)


def wait_until_serving(process: subprocess.Popen, base_url: str, timeout_s: float = 60) -> None:
    """Waits for GET /healthz to answer; raises RuntimeError if the process exits first."""
    import urllib.request

    def up():
        if process.poll() is not None:
            raise RuntimeError(f"the API exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(f"{base_url}/healthz", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    wait_for(up, timeout_s, what=f"the API at {base_url}")


def create_operator(auth_emulator, email: str, password: str) -> str:
    """A user with the operator role on the Auth emulator (kept if it exists); returns its token."""
    from local.emulators import EmulatorError

    try:
        uid, _ = auth_emulator.sign_up(email, password)
    except EmulatorError as e:
        if "EMAIL_EXISTS" not in str(e):
            raise
        uid = auth_emulator.lookup(email)
    auth_emulator.set_claims(uid, {"operator": True})
    return auth_emulator.sign_in(email, password)
