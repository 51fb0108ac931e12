"""The Makefile's cloud targets, offline (`make -n`): what each runs, parsed with the tools' own
parsers where there is one (the launcher's argparse). deploy/infra.sh: tests/test_deploy.py."""

import os
import shlex
import subprocess

import pytest

from tests.support import REPO_ROOT, flag_values, setup_beam_version

CLOUD = ["PROJECT=demo-occupancy-123", "REGION=europe-west1", "BUCKET=demo-occupancy-bucket", "TAG=v1"]
# The image `make template` builds with CLOUD, and every spec and launch names.
CLOUD_IMAGE = "europe-west1-docker.pkg.dev/demo-occupancy-123/occupancy/occupancy-pipeline:v1"


def _make(*args):
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PROJECT", "REGION", "BUCKET", "IMAGE", "TAG", "PARAMS", "UPDATE", "DRY_RUN")
    }
    return subprocess.run(
        ["make", "--no-print-directory", "-n", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


@pytest.mark.parametrize(
    "target", ["deploy-infra", "template", "launch", "replay", "forecast-launch", "dataflow", "drain", "api-deploy"]
)
def test_make_targets_say_what_is_missing(target):
    out = _make(target)
    assert out.returncode != 0
    assert "PROJECT is not set" in out.stderr


def _commands(out) -> list:
    """`make -n`'s commands, each parsed as the shell would (pipes split into their commands; a
    redirection stays at the end of its command as `>` and the file)."""
    commands = []
    for line in out.stdout.replace("\\\n", " ").splitlines():
        words = shlex.split(line)
        while "|" in words:
            commands.append(words[: words.index("|")])
            words = words[words.index("|") + 1 :]
        if words:
            commands.append(words)
    return commands


def _flex_template_build(out, spec: str) -> list:
    [build] = [c for c in _commands(out) if c[:4] == ["gcloud", "dataflow", "flex-template", "build"] and c[4] == spec]
    return build


def test_make_template_builds_image_and_spec():
    from pipeline import launch

    out = _make("template", *CLOUD)
    assert out.returncode == 0, out.stderr
    commands = _commands(out)
    [submit] = [c for c in commands if c[:3] == ["gcloud", "builds", "submit"]]
    assert flag_values(submit)["substitutions"] == f"_IMAGE={CLOUD_IMAGE},_BEAM_VERSION={setup_beam_version()}"
    build = _flex_template_build(out, "gs://demo-occupancy-bucket/templates/occupancy-v1.json")
    assert flag_values(build)["metadata-file"] == "templates/metadata.json" and "--print-only" in build
    [complete] = [c for c in commands if c[1:4] == ["-m", "pipeline.launch", "complete-spec"]]
    assert complete[-2:] == [">", ".local/template-spec.json"]
    assert launch.build_parser().parse_args(complete[3:-2]).metadata == "templates/metadata.json"
    [copy] = [c for c in commands if c[:3] == ["gcloud", "storage", "cp"]]
    assert copy[3:5] == [".local/template-spec.json", "gs://demo-occupancy-bucket/templates/occupancy-v1.json"]


def _batch_spec_build(out, name: str) -> list:
    """The `flex-template build` command of `make template`'s batch spec `name` (replay,
    forecast), checked to be built on the same image from the metadata python -m
    pipeline.template_metadata derives from templates/<name>.json."""
    derive = [c[3:] for c in _commands(out) if c[1:3] == ["-m", "pipeline.template_metadata"]]
    assert [f"templates/{name}.json", ">", f".local/{name}-metadata.json"] in derive
    build = _flex_template_build(out, f"gs://demo-occupancy-bucket/templates/occupancy-{name}-v1.json")
    flags = flag_values(build)
    assert flags["image"] == CLOUD_IMAGE and flags["metadata-file"] == f".local/{name}-metadata.json"
    assert "--enable-streaming-engine" not in build
    return build


def test_make_template_builds_the_replay_spec_on_the_same_image():
    out = _make("template", *CLOUD)
    assert out.returncode == 0, out.stderr
    assert "--print-only" not in _batch_spec_build(out, "replay")


def test_make_replay_launches_the_batch_template_with_the_archive():
    from pipeline import launch

    assert "ARCHIVE is not set" in _make("replay", *CLOUD).stderr
    out = _make("replay", *CLOUD, "ARCHIVE=gs://demo-archive/events/*", "PARAMS=history_collection=history_replay")
    assert out.returncode == 0, out.stderr
    args = launch.build_parser().parse_args(_make_line(out, "pipeline.launch")[3:])
    assert args.batch is True and args.update is False and args.job_name == "occupancy-replay"
    assert args.template == "gs://demo-occupancy-bucket/templates/occupancy-replay-v1.json"
    assert args.parameter == [
        "archive=gs://demo-archive/events/*",
        f"sdk_container_image={CLOUD_IMAGE}",
        "history_collection=history_replay",
    ]


def test_make_template_builds_the_forecast_spec_and_forecast_launch_starts_it():
    from pipeline import launch

    out = _make("template", *CLOUD)
    assert out.returncode == 0, out.stderr
    _batch_spec_build(out, "forecast")
    assert "TIDES_INPUT or TIDES_BIGQUERY is not set" in _make("forecast-launch", *CLOUD).stderr
    both = ("TIDES_INPUT=gs://demo-occupancy-bucket/tides", "TIDES_BIGQUERY=demo-occupancy-123.tides")
    assert "not both" in _make("forecast-launch", *CLOUD, *both).stderr
    out = _make(
        "forecast-launch",
        *CLOUD,
        "TIDES_INPUT=gs://demo-occupancy-bucket/tides",
        "GTFS_STATIC=gs://demo-occupancy-bucket/gtfs.zip",
        "FORECAST_OUTPUT=gs://demo-occupancy-bucket/forecast",
        "PARAMS=forecast_days=28",
    )
    assert out.returncode == 0, out.stderr
    args = launch.build_parser().parse_args(_make_line(out, "pipeline.launch")[3:])
    assert args.batch is True and args.job_name == "occupancy-forecast"
    assert args.template == "gs://demo-occupancy-bucket/templates/occupancy-forecast-v1.json"
    assert args.parameter == [
        "tides_input=gs://demo-occupancy-bucket/tides",
        "gtfs_static=gs://demo-occupancy-bucket/gtfs.zip",
        "forecast_output=gs://demo-occupancy-bucket/forecast",
        f"sdk_container_image={CLOUD_IMAGE}",
        "forecast_days=28",
    ]
    # Or the history in BigQuery, the dataset the occupancy job writes its TIDES tables to.
    out = _make(
        "forecast-launch",
        *CLOUD,
        "TIDES_BIGQUERY=demo-occupancy-123.tides",
        "GTFS_STATIC=gs://demo-occupancy-bucket/gtfs.zip",
        "FORECAST_OUTPUT=gs://demo-occupancy-bucket/forecast",
    )
    assert out.returncode == 0, out.stderr
    args = launch.build_parser().parse_args(_make_line(out, "pipeline.launch")[3:])
    assert args.parameter[0] == "tides_bigquery=demo-occupancy-123.tides"


def _make_line(out, marker):
    return shlex.split(next(ln for ln in out.stdout.replace("\\\n", " ").splitlines() if marker in ln))


def test_make_launch_passes_the_parameters_update_and_mappings():
    from pipeline import launch

    out = _make(
        "launch",
        *CLOUD,
        "UPDATE=1",
        "PARAMS=daily_reset=07:30 timezone=Europe/Vienna",
        "MAPPINGS=ParseEvents=Parse Old=New",
    )
    assert out.returncode == 0, out.stderr
    command = _make_line(out, "pipeline.launch")
    assert command[1:4] == ["-m", "pipeline.launch", "launch"]
    # The launcher's own parser accepts what make passes, and reads it as meant.
    args = launch.build_parser().parse_args(command[3:])
    assert (args.project, args.region, args.job_name) == ("demo-occupancy-123", "europe-west1", "occupancy")
    assert args.template == "gs://demo-occupancy-bucket/templates/occupancy-v1.json"
    assert args.service_account == "occupancy-pipeline@demo-occupancy-123.iam.gserviceaccount.com"
    assert args.update is True and args.transform_name_mapping == ["ParseEvents=Parse", "Old=New"]
    assert args.parameter == [
        "input_subscription=projects/demo-occupancy-123/subscriptions/occupancy-pipeline",
        "dead_letter_topic=projects/demo-occupancy-123/topics/occupancy-dead-letters",
        f"sdk_container_image={CLOUD_IMAGE}",
        "daily_reset=07:30",
        "timezone=Europe/Vienna",
    ]


@pytest.mark.parametrize("target", ["drain", "cancel", "status"])
def test_make_drain_cancel_status_call_the_launcher(target):
    from pipeline import launch

    out = _make(target, "PROJECT=demo-occupancy-123", "REGION=europe-west1")
    assert out.returncode == 0, out.stderr
    command = _make_line(out, "pipeline.launch")
    args = launch.build_parser().parse_args(command[3:])
    assert (args.command, args.project, args.region, args.job_name) == (
        target,
        "demo-occupancy-123",
        "europe-west1",
        "occupancy",
    )


def test_make_dataflow_launches_directly_with_setup_file():
    out = _make("dataflow", *CLOUD, "DRY_RUN=1")
    assert out.returncode == 0, out.stderr
    line = next(ln for ln in out.stdout.replace("\\\n", " ").splitlines() if "pipeline.main" in ln)
    command = shlex.split(line)
    for arg in (
        "--runner",
        "DataflowRunner",
        "--streaming",
        "--enable_streaming_engine",
        "--setup_file",
        "./setup.py",
        "--dry_run=True",
    ):
        assert arg in command, arg


def test_make_deploy_infra_calls_the_script():
    out = _make("deploy-infra", *CLOUD, "DRY_RUN=1")
    assert out.returncode == 0, out.stderr
    assert (
        "bash deploy/infra.sh --project 'demo-occupancy-123' --region 'europe-west1' "
        "--bucket 'demo-occupancy-bucket' --dry-run"
    ) in out.stdout


def test_make_passes_the_edge_to_infra_and_the_ingress_to_cloud_run():
    out = _make("deploy-infra", *CLOUD, "DRY_RUN=1", "API_DOMAIN=api.example.org", "API_RATE_LIMIT=300")
    assert out.returncode == 0, out.stderr
    infra = _make_line(out, "infra.sh")
    assert infra[infra.index("--api-domain") + 1] == "api.example.org"
    assert infra[infra.index("--api-rate-limit") + 1] == "300"
    out = _make("api-deploy", *CLOUD, "TAG=t1", "API_INGRESS=internal-and-cloud-load-balancing")
    assert out.returncode == 0, out.stderr
    deploy = flag_values(_make_line(out, "gcloud run deploy"))
    assert (deploy["ingress"], deploy["max-instances"]) == ("internal-and-cloud-load-balancing", "10")


def _containers(command) -> dict:
    """A multi-container `gcloud run deploy`'s flags per --container, by container name."""
    containers, current = {}, None
    for arg in command:
        if arg.startswith("--container="):
            current = containers.setdefault(arg.split("=", 1)[1], [])
        elif current is not None:
            current.append(arg)
    return {name: flag_values(args) for name, args in containers.items()}


def test_make_api_deploy_puts_the_metrics_collector_beside_the_api_on_the_port_it_scrapes():
    """The collector's default configuration scrapes localhost:8080/metrics: the API's container
    is the one serving, on that port; the collector starts after it. Empty: the API alone."""
    out = _make("api-deploy", *CLOUD)
    assert out.returncode == 0, out.stderr
    containers = _containers(_make_line(out, "gcloud run deploy"))
    assert list(containers) == ["api", "collector"]
    api, collector = containers["api"], containers["collector"]
    assert api["image"].endswith("/occupancy-api:v1") and api["port"] == "8080"
    assert "port" not in collector and collector["depends-on"] == "api"
    assert collector["image"].startswith("us-docker.pkg.dev/cloud-ops-agents-artifacts/cloud-run-gmp-sidecar/")
    out = _make("api-deploy", *CLOUD, "API_METRICS_SIDECAR=")
    assert list(_containers(_make_line(out, "gcloud run deploy"))) == ["api"]
