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
                subscriber.create_subscription(name=subscription_path(project, name),
                                               topic=topic_path(project, topic),
                                               ack_deadline_seconds=60)


def pipeline_command(project: str, subscription: str, *extra_args: str) -> list:
    return [sys.executable, "-m", "pipeline.main", "--runner=BundleBasedDirectRunner", "--streaming",
            f"--project={project}", f"--input_subscription={subscription_path(project, subscription)}",
            *extra_args]


def start_pipeline(project: str, subscription: str, *extra_args: str, env: dict = None,
                   log_path: str = None) -> subprocess.Popen:
    """Starts `python -m pipeline.main` on the local runner in its own process group."""
    full_env = dict(os.environ, **(env or {}))
    full_env.setdefault("PYTHONUNBUFFERED", "1")
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL
    try:
        return subprocess.Popen(pipeline_command(project, subscription, *extra_args), env=full_env,
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
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
