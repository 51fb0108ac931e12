"""The Flex Template, its image and the deployment files agree with the code.

Checked offline: templates/metadata.json against OccupancyOptions (both ways,
through argparse, not through a shared list), its regexes against literal good
and bad values, its streaming fields against Dataflow's discovery document,
gcloud's own parsing of the metadata (flex-template build --print-only), the
Dockerfile against setup.py and the Firestore index file. The image and the
Firestore indexes: tests/test_template_image.py; the deployment scripts and
make targets: tests/test_make_targets.py.
"""

import datetime
import json
import os
import pathlib
import re
import subprocess
import sys

import pytest
from google.cloud.dataflow_v1beta3.types import TemplateMetadata

from tests.support import option_actions

REPO = pathlib.Path(__file__).resolve().parents[1]
METADATA = REPO / "templates" / "metadata.json"
DOCKERFILE = REPO / "templates" / "Dockerfile"
INDEXES = REPO / "deploy" / "firestore.indexes.json"

# OccupancyOptions options deliberately not template parameters, and why. Every other one is
# something an operator sets when launching the streaming job.
NOT_IN_TEMPLATE = {"archive"}  # a replay runs in batch (python -m pipeline.main --archive)

# Options without a default that are still optional at launch, and why.
OPTIONAL_WITHOUT_DEFAULT = {
    "input_subscription",  # one of input_subscription / input_topic (validate_occupancy)
    "input_topic",  # the other one
    "dead_letter_topic",  # none: dead letters go to --dead_letter_collection
    "firestore_project",  # none: the job's --project
}

# Values each parameter's regex must accept (docs/operations.md examples among them) and reject.
GOOD = {
    "input_subscription": [
        "projects/my-project/subscriptions/occupancy-pipeline",
        "projects/demo-occupancy-123/subscriptions/occupancy-pipeline",
    ],
    "input_topic": ["projects/my-project/topics/occupancy-events"],
    "dead_letter_topic": ["projects/my-project/topics/occupancy-dead-letters"],
    "firestore_project": ["my-project", "demo-occupancy-123"],
    "firestore_database": ["(default)", "occupancy"],
    "registry_refresh_s": ["60", "0.5", "2"],
    "device_auth": ["require", "log", "off"],
    "reorder_delay_s": ["2", "0", "0.5"],
    "flush_interval_s": ["1", "0.5", "2"],
    "max_abs_delta": ["100", "2"],
    "max_future_skew_s": ["300", "0", "0.5"],
    "dedup_window": ["1000", "2"],
    "legacy_timezone": ["UTC", "Europe/Vienna", "America/Argentina/Buenos_Aires", "Etc/GMT+1"],
    "daily_reset": ["07:30", "03:00", "23:59", "0:00"],
    "timezone": ["UTC", "Europe/Vienna"],
    "write_retry_deadline_s": ["60", "0.5"],
    "tides_output": ["gs://my-bucket/tides", "gs://occupancy-analytics/tides/v1"],
    "tides_bigquery": ["my-project.tides", "occupancy-prod-123.TIDES_2026"],
    "gtfs_static": ["gs://my-bucket/gtfs/gtfs.zip"],
    "tides_window_s": ["300", "60", "0.5"],
    "stop_gap_s": ["45", "20.5"],
    "realtime_collection": ["realtime", "realtime_staging", "rt-2"],
    "history_collection": ["history"],
    "devices_collection": ["devices"],
    "trains_collection": ["trains"],
    "dead_letter_collection": ["dead_letters"],
    "trips_collection": ["trips", "trips_2026"],
}
BAD = {
    "input_subscription": [
        "projects/x/topics/",
        "projects/my-project/topics/occupancy-events",
        "occupancy-pipeline",
        "projects/My_Project/subscriptions/occupancy-pipeline",
        "projects/my-project/subscriptions/a/b",
    ],
    "input_topic": ["projects/x/topics/", "projects/my-project/subscriptions/occupancy-pipeline", "occupancy-events"],
    "dead_letter_topic": ["projects/x/topics/", "occupancy-dead-letters"],
    "firestore_project": ["a/b", "x", "My-Project", "my-project-"],
    "firestore_database": ["a/b", "db", "Occupancy", "occupancy-"],
    "registry_refresh_s": ["-1", "0", "0.0", "abc", "", "nan"],
    "device_auth": ["", "Require", "none", "require "],
    "reorder_delay_s": ["-1", "abc", ""],
    "flush_interval_s": ["-1", "0", "x"],
    "max_abs_delta": ["-1", "0", "1.5"],
    "max_future_skew_s": ["-1", "abc"],
    "dedup_window": ["-1", "0", "1e3"],
    "legacy_timezone": ["a/b", "Europe/../etc", "", "Europe Vienna"],
    "daily_reset": ["25:00", "24:00", "07:60", "0730", "7", ""],
    "timezone": ["a/b", ""],
    "write_retry_deadline_s": ["-1", "0"],
    "tides_output": ["/tmp/tides", "gs://", "gs://Bucket/x", "s3://my-bucket/tides", "gs://my-bucket/a b"],
    "tides_bigquery": ["tides", "my-project.", "my-project.tides.stop_visits", "My-Project.tides", "my-project.ti-des"],
    "gtfs_static": ["gtfs.zip", "gs://x/gtfs.zip"],
    "tides_window_s": ["0", "-5", "x"],
    "stop_gap_s": ["0", "-1", ""],
    "realtime_collection": ["a/b", "", "__x__", ".", "1st"],
    "history_collection": ["a/b"],
    "devices_collection": ["a/b"],
    "trains_collection": ["a/b"],
    "dead_letter_collection": ["a/b"],
    "trips_collection": ["a/b", "", "__trips__"],
}
# Written literally in docs/operations.md, "Deploy to Dataflow".
README_EXAMPLES = {
    "input_subscription": "projects/my-project/subscriptions/occupancy-pipeline",
    "dead_letter_topic": "projects/my-project/topics/occupancy-dead-letters",
    "daily_reset": "07:30",
    "timezone": "Europe/Vienna",
    "reorder_delay_s": "0.5",
    "flush_interval_s": "2",
}


@pytest.fixture(scope="module")
def metadata():
    return json.loads(METADATA.read_text())


@pytest.fixture(scope="module")
def params(metadata):
    return {p["name"]: p for p in metadata["parameters"]}


@pytest.fixture(scope="module")
def actions():
    return option_actions()


def _matches(param, value):
    return all(re.fullmatch(regex, value) for regex in param.get("regexes", []))


# --- metadata.json ------------------------------------------------------------


def test_metadata_is_a_valid_template_metadata_message():
    # Strict parse with the Dataflow API's own message: unknown fields or enum values fail.
    parsed = TemplateMetadata.from_json(METADATA.read_text())
    assert parsed.name and parsed.parameters
    for param in parsed.parameters:
        assert param.name and param.label and param.help_text


def test_every_template_parameter_is_a_pipeline_option(params, actions):
    assert len(params) == len(json.loads(METADATA.read_text())["parameters"])  # no duplicates
    assert set(params) - set(actions) == set()


def test_every_launch_option_is_a_template_parameter(params, actions):
    assert set(actions) - NOT_IN_TEMPLATE - set(params) == set()
    assert NOT_IN_TEMPLATE <= set(actions)


def test_optional_flags_match_the_defaults(params, actions):
    for name, param in params.items():
        expected = actions[name].default is not None or name in OPTIONAL_WITHOUT_DEFAULT
        assert param.get("isOptional", False) is expected, name


def test_help_text_states_the_default_and_the_input_rule(params, actions):
    for name, param in params.items():
        default = actions[name].default
        if default is None:
            continue
        shown = (
            "off"
            if default == ""
            else str(int(default))
            if isinstance(default, float) and default.is_integer()
            else str(default)
        )
        assert f"Default: {shown}." in param["helpText"], name
    for name in ("input_subscription", "input_topic"):
        assert "one of them is required" in params[name]["helpText"]
        assert "input_subscription and input_topic" in params[name]["helpText"]


def test_every_parameter_has_a_regex_and_literal_examples(params):
    assert set(GOOD) == set(params) == set(BAD)
    for name, param in params.items():
        assert param.get("regexes"), name


@pytest.mark.parametrize("name", sorted(GOOD))
def test_regexes_accept_good_values_that_the_pipeline_also_accepts(name, params, actions):
    convert = actions[name].type or str
    for value in GOOD[name]:
        assert _matches(params[name], value), (name, value)
        convert(value)  # argparse's own check of the option accepts it too


@pytest.mark.parametrize("name", sorted(BAD))
def test_regexes_reject_bad_values(name, params):
    for value in BAD[name]:
        assert not _matches(params[name], value), (name, value)


def test_readme_examples_pass_the_regexes(params):
    readme = (REPO / "docs" / "operations.md").read_text()
    for name, value in README_EXAMPLES.items():
        assert f"{name}={value}" in readme, (name, value)
        assert _matches(params[name], value), (name, value)


def _gcloud_spec(tmp_path, metadata=METADATA):
    """`gcloud dataflow flex-template build --print-only` of the metadata: gcloud's own parsing
    and validation of the spec, offline (--print-only uploads nothing)."""
    env = {**os.environ, "CLOUDSDK_CONFIG": str(tmp_path), "CLOUDSDK_CORE_DISABLE_PROMPTS": "1"}
    out = subprocess.run(
        [
            "gcloud",
            "dataflow",
            "flex-template",
            "build",
            "gs://demo-occupancy-bucket/templates/t.json",
            "--project=demo-occupancy-123",
            "--sdk-language=PYTHON",
            "--print-only",
            "--image=europe-west1-docker.pkg.dev/demo-occupancy-123/occupancy/occupancy-pipeline:test",
            f"--metadata-file={metadata}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    return out


def test_gcloud_accepts_the_metadata(tmp_path):
    out = _gcloud_spec(tmp_path)
    spec = json.loads(out.stdout.lstrip("|-\n"))
    assert [p["name"] for p in spec["metadata"]["parameters"]] == [
        p["name"] for p in json.loads(METADATA.read_text())["parameters"]
    ]
    assert spec["sdkInfo"]["language"] == "PYTHON"


# --- the replay's batch template: templates/replay.json on metadata.json ------------------

REPLAY_OVERLAY = REPO / "templates" / "replay.json"
# The replay reads the archive instead; its dead letters go to --dead_letter_collection.
NOT_IN_REPLAY = {"input_subscription", "input_topic", "dead_letter_topic"}


def _derived_metadata(overlay: pathlib.Path, directory: pathlib.Path) -> pathlib.Path:
    """What `make template` builds a batch template's spec from (python -m pipeline.template_metadata)."""
    out = subprocess.run(
        [sys.executable, "-m", "pipeline.template_metadata", str(overlay), "--base", str(METADATA)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert out.returncode == 0, out.stderr
    path = directory / f"{overlay.stem}-metadata.json"
    path.write_text(out.stdout)
    return path


@pytest.fixture(scope="module")
def replay_metadata(tmp_path_factory):
    return _derived_metadata(REPLAY_OVERLAY, tmp_path_factory.mktemp("replay"))


def _batch_template(path: pathlib.Path) -> dict:
    """A derived template's metadata, checked to be a strict TemplateMetadata of a batch job."""
    TemplateMetadata.from_json(path.read_text())  # strict: unknown fields fail
    meta = json.loads(path.read_text())
    assert meta["streaming"] is False
    assert not {"supportsAtLeastOnce", "supportsExactlyOnce", "defaultStreamingMode"} & set(meta)
    return meta


def test_the_replay_template_is_batch_with_every_option_but_the_streaming_inputs(replay_metadata, params, actions):
    meta = _batch_template(replay_metadata)
    names = [p["name"] for p in meta["parameters"]]
    assert len(names) == len(set(names)) and set(names) == set(actions) - NOT_IN_REPLAY
    archive, *shared = meta["parameters"]
    assert archive["name"] == "archive" and archive.get("isOptional", False) is False
    assert "Required." in archive["helpText"]
    for param in shared:  # written once, in metadata.json
        assert param == params[param["name"]]


def test_the_replay_archive_regex(replay_metadata, actions):
    archive = json.loads(replay_metadata.read_text())["parameters"][0]
    for value in ("gs://my-archive/events/*", "gs://occupancy-archive/events/2026-12-0*.txt"):
        assert _matches(archive, value), value
        actions["archive"].type(value)
    for value in ("/tmp/archive/*.txt", "gs://my-archive", "gs://my-archive/", "s3://my-archive/x", ""):
        assert not _matches(archive, value), value


def test_gcloud_accepts_the_replay_metadata(tmp_path, replay_metadata):
    spec = json.loads(_gcloud_spec(tmp_path, replay_metadata).stdout.lstrip("|-\n"))
    assert spec["metadata"]["name"] == "Train occupancy replay"
    assert spec["metadata"]["parameters"][0]["name"] == "archive"


def test_an_overlay_naming_unknown_or_existing_parameters_is_refused():
    from pipeline.template_metadata import OverlayError, derive

    base = json.loads(METADATA.read_text())
    with pytest.raises(OverlayError, match="does not have"):
        derive(base, {"without": ["input_queue"]})
    with pytest.raises(OverlayError, match="already has"):
        derive(base, {"parameters": [{"name": "timezone", "label": "x", "helpText": "x"}]})


# --- the forecast's batch template: templates/forecast.json on metadata.json ----------------

FORECAST_OVERLAY = REPO / "templates" / "forecast.json"
# The occupancy job's options the forecast job reads too (ForecastOptions.shared, the registry).
SHARED_WITH_FORECAST = {"gtfs_static", "firestore_project", "firestore_database", "trains_collection", "tides_bigquery"}
FORECAST_GOOD = {
    "forecast_output": ["gs://my-bucket/forecast", "gs://occupancy-analytics/forecast/v1"],
    "gtfs_static": ["gs://my-bucket/gtfs/gtfs.zip"],
    "tides_input": ["gs://my-bucket/tides"],
    "tides_bigquery": ["my-project.tides", "occupancy-prod-123.TIDES_2026"],
    "stop_visits": ["gs://my-bucket/tides/stop_visits/**.parquet", "gs://other-tool/tides/stop_visits.csv"],
    "trips_performed": ["gs://my-bucket/tides/trips_performed/**.parquet"],
    "forecast_start": ["2026-12-08", "2027-01-31"],
    "forecast_days": ["14", "1", "90"],
    "forecast_bigquery": ["my-project.tides", "occupancy-prod-123.TIDES_2026"],
    "forecast_collection": ["forecasts", "forecasts_staging"],
}
FORECAST_BAD = {
    "forecast_output": ["/tmp/forecast", "gs://my-bucket forecast", "s3://b/f", ""],
    "gtfs_static": ["/data/gtfs.zip", ""],
    "tides_input": ["tides", "file:///tmp/tides"],
    "tides_bigquery": ["tides", "my-project:tides", "my-project.ti-des"],
    "stop_visits": ["gs://my-bucket", "stop_visits.csv"],
    "trips_performed": ["gs://my-bucket/", "*.parquet"],
    "forecast_start": ["2026-13-01", "08.12.2026", "tomorrow", ""],
    "forecast_days": ["0", "-1", "1.5", "1000", ""],
    "forecast_bigquery": ["tides", "my-project:tides", "my-project.ti-des"],
    "forecast_collection": ["a/b", "", "_x"],
}


@pytest.fixture(scope="module")
def forecast_metadata(tmp_path_factory):
    return _derived_metadata(FORECAST_OVERLAY, tmp_path_factory.mktemp("forecast"))


@pytest.fixture(scope="module")
def forecast_actions(actions):
    """ForecastOptions' own flags as argparse builds them, by dest, with the shared ones."""
    from pipeline.forecast.options import ForecastOptions

    shared = SHARED_WITH_FORECAST | {"write_retry_deadline_s"}
    return {**option_actions(ForecastOptions), **{name: actions[name] for name in shared}}


def test_the_forecast_template_is_batch_with_every_forecast_option(forecast_metadata, params, forecast_actions):
    meta = _batch_template(forecast_metadata)
    names = [p["name"] for p in meta["parameters"]]
    assert len(names) == len(set(names)) and set(names) == set(forecast_actions)
    own = {p["name"]: p for p in meta["parameters"] if p["name"] in FORECAST_GOOD}
    for name, param in own.items():  # required as validate_forecast requires them
        required = name in ("forecast_output", "gtfs_static")
        assert param.get("isOptional", False) is not required, name
        assert ("Required." in param["helpText"]) is required, name
        if not required:
            default = forecast_actions[name].default
            assert "Default: " in param["helpText"] and (default in ("", []) or str(default) in param["helpText"])
    for param in meta["parameters"]:
        if param["name"] not in own:  # written once, in metadata.json
            assert param == params[param["name"]]


@pytest.mark.parametrize("name", sorted(FORECAST_GOOD))
def test_the_forecast_regexes_accept_what_the_job_accepts_and_refuse_the_rest(
    name, forecast_metadata, forecast_actions
):
    param = {p["name"]: p for p in json.loads(forecast_metadata.read_text())["parameters"]}[name]
    convert = forecast_actions[name].type or str
    for value in FORECAST_GOOD[name]:
        assert _matches(param, value), (name, value)
        convert(value)
    for value in FORECAST_BAD[name]:
        assert not _matches(param, value), (name, value)


def test_gcloud_accepts_the_forecast_metadata(tmp_path, forecast_metadata):
    spec = json.loads(_gcloud_spec(tmp_path, forecast_metadata).stdout.lstrip("|-\n"))
    assert spec["metadata"]["name"] == "Train occupancy forecast"
    assert spec["metadata"]["parameters"][0]["name"] == "forecast_output"


def test_the_launchers_program_runs_the_forecast_when_given_its_output(tmp_path):
    """python pipeline/main.py, as the image's launcher runs it, with the forecast template's
    parameters: the forecast job (no history: a NO_DATA_AVAILABLE row per departure)."""
    from adapters import tides_parquet
    from tests import schedule_feed

    feed = schedule_feed.write(tmp_path / "gtfs.zip", schedule_feed.WITH_STOPS)
    (tmp_path / "tides").mkdir()
    out = subprocess.run(
        [
            sys.executable,
            str(REPO / "pipeline" / "main.py"),
            f"--forecast_output={tmp_path / 'forecast'}",
            f"--tides_input={tmp_path / 'tides'}",
            f"--gtfs_static={feed}",
            "--forecast_start=2026-12-07",
            "--forecast_days=1",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    rows = tides_parquet.read_table(str(tmp_path / "forecast"), "occupancy_forecast").to_pylist()
    assert rows and {r["occupancy_status"] for r in rows} == {"NO_DATA_AVAILABLE"}
    assert {r["forecast_start"] for r in rows} == {datetime.date(2026, 12, 7)}


def test_an_overlay_keeping_only_some_parameters_may_replace_the_others():
    from pipeline.template_metadata import OverlayError, derive

    base = json.loads(METADATA.read_text())
    own = {"name": "timezone", "label": "x", "helpText": "x"}
    derived = derive(base, {"only": ["firestore_project"], "parameters": [own]})
    assert [p["name"] for p in derived["parameters"]] == ["timezone", "firestore_project"]
    with pytest.raises(OverlayError, match="does not have"):
        derive(base, {"only": ["input_queue"]})
    with pytest.raises(OverlayError, match="both"):
        derive(base, {"only": ["timezone"], "without": ["input_topic"]})
    with pytest.raises(OverlayError, match="already has"):
        derive(base, {"only": ["timezone"], "parameters": [own]})


# --- streaming fields, against Dataflow's own discovery document ------------------------

DISCOVERY = REPO / "tests" / "data" / "dataflow.v1b3.json"  # from google-api-python-client's cache


def _template_metadata_schema():
    return json.loads(DISCOVERY.read_text())["schemas"]["TemplateMetadata"]


def test_metadata_declares_streaming_and_its_modes_as_dataflow_defines_them():
    schema = _template_metadata_schema()["properties"]
    metadata = json.loads(METADATA.read_text())
    json_types = {"boolean": bool, "string": str, "array": list}
    for key, value in metadata.items():
        assert key in schema, f"{key} is not a TemplateMetadata field"
        assert isinstance(value, json_types[schema[key]["type"]]), key
    assert metadata["streaming"] is True
    # The job is idempotent per device seq (state de-duplicates, writes replace), so Pub/Sub
    # redeliveries in at-least-once mode cannot double count: both modes are supported.
    assert metadata["supportsAtLeastOnce"] is True and metadata["supportsExactlyOnce"] is True
    described = schema["defaultStreamingMode"]["description"]
    allowed = described.split("Possible values:")[1].replace(" and ", ",").replace(" ", "").split(",")
    assert metadata["defaultStreamingMode"] in allowed and metadata["defaultStreamingMode"] != "UNSPECIFIED"
    # "Only valid if both supports_at_least_once and supports_exactly_once are true."
    assert "Only valid if both" in described


def test_template_spec_keeps_the_streaming_fields(tmp_path):
    """What `make template` runs: gcloud builds the spec (and drops the streaming fields),
    pipeline.launch complete-spec puts them back."""
    out = _gcloud_spec(tmp_path)
    assert "streaming" not in json.loads(out.stdout.lstrip("|-\n"))["metadata"]  # gcloud 528 drops it
    completed = subprocess.run(
        [sys.executable, "-m", "pipeline.launch", "complete-spec", "--metadata", str(METADATA)],
        input=out.stdout,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert completed.returncode == 0, completed.stderr
    spec = json.loads(completed.stdout)
    meta = spec["metadata"]
    assert (
        meta.get("streaming"),
        meta.get("supportsAtLeastOnce"),
        meta.get("supportsExactlyOnce"),
        meta.get("defaultStreamingMode"),
    ) == (True, True, True, "EXACTLY_ONCE")
    assert TemplateMetadata.from_json(json.dumps(meta)).streaming is True  # the API's own message
    assert spec["image"].endswith("occupancy-pipeline:test") and spec["sdkInfo"] == {"language": "PYTHON"}
