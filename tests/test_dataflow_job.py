"""The Dataflow job, built offline by the real DataflowRunner with --dry_run=True.

Nothing is submitted and no account is needed: with --dry_run=True the runner
translates the pipeline (Runner v2 portable proto, Dataflow Job message) and
returns before it would stage files or call the API. A valid-looking project id
and bucket name keep it offline (docs/design.md, "More measured facts": `gs://b` is too short and makes it
retry the network for minutes); each build takes about a second here.

Under Runner v2 `job.proto.steps` is empty, so the assertions read
`job.proto.type` and the portable pipeline `job.proto_pipeline`.
"""

import pathlib
import re
import time

import apache_beam as beam
import pytest
from apache_beam.portability.api import beam_runner_api_pb2
from apache_beam.runners.dataflow.internal import apiclient
from google.cloud import dataflow_v1beta3

from pipeline.build import build_pipeline
from pipeline.options import OccupancyOptions
from tests.support import option_actions

REPO = pathlib.Path(__file__).resolve().parents[1]
PROJECT = "demo-occupancy-123"
IMAGE = "europe-west1-docker.pkg.dev/demo-occupancy-123/occupancy/occupancy-pipeline:test"
SUBSCRIPTION = "projects/demo-occupancy-123/subscriptions/occupancy-pipeline"
TOPIC = "projects/demo-occupancy-123/topics/occupancy-events"
DEAD_LETTER_TOPIC = "projects/demo-occupancy-123/topics/occupancy-dead-letters"

DATAFLOW_ARGS = [
    f"--project={PROJECT}",
    "--region=europe-west1",
    "--job_name=occupancy",
    "--temp_location=gs://demo-occupancy-bucket/tmp",
    "--streaming",
    "--enable_streaming_engine",
    # Built into an sdist by the runner (python setup.py sdist, well under a second).
    f"--setup_file={REPO / 'setup.py'}",
    f"--sdk_container_image={IMAGE}",
    "--dry_run=True",
]

# Every OccupancyOptions option at a non-default value (input_topic excludes
# input_subscription: it is set in the second job below).
OCCUPANCY_ARGS = {
    "input_subscription": SUBSCRIPTION,
    "dead_letter_topic": DEAD_LETTER_TOPIC,
    "firestore_project": "demo-occupancy-store",
    "firestore_database": "occupancy-db",
    "registry_refresh_s": "30",
    "tides_window_s": "60",
    "stop_gap_s": "20",
    "device_auth": "log",
    "reorder_delay_s": "3",
    "flush_interval_s": "2",
    "max_abs_delta": "50",
    "max_future_skew_s": "120",
    "dedup_window": "500",
    "legacy_timezone": "Europe/Vienna",
    "daily_reset": "03:00",
    "timezone": "Europe/Vienna",
    "write_retry_deadline_s": "90",
    "realtime_collection": "rt",
    "history_collection": "hist",
    "devices_collection": "devs",
    "trains_collection": "fleet",
    "dead_letter_collection": "rejected",
    "trips_collection": "balancing",
}

# The labels docs/operations.md ("Deploy to Dataflow") documents as stable for --update.
TOP_LEVEL_STEPS = [
    "ReadEvents",
    "ParseEvents",
    "EnrichWithTrain",
    "RunningOccupancy",
    "WriteToFirestore",
    "CollectDeadLetters",
    "WriteDeadLetters",
]
SECOND_LEVEL_STEPS = [  # with --dead_letter_topic
    "ReadEvents/Read",
    "ReadEvents/ParDo(_AddMetricsPassThrough)",
    "ReadEvents/Map(_from_proto_str)",
    "ParseEvents/Parse",
    "EnrichWithTrain/LookupTrain",
    "RunningOccupancy/FoldOccupancy",
    "RunningOccupancy/CountFlushes",
    "WriteToFirestore/Write",
    "WriteDeadLetters/ToPubsubMessage",
    "WriteDeadLetters/PublishDeadLetters",
]
DEAD_LETTERS_TO_FIRESTORE_STEPS = [  # without --dead_letter_topic
    "WriteDeadLetters/StoreDeadLetters",
]
STATEFUL_STEP = "RunningOccupancy/FoldOccupancy/ParDo(FoldOccupancy)"


def _dry_run(args):
    options = OccupancyOptions(args)
    pipeline = beam.Pipeline(options=options)
    build_pipeline(pipeline, options)
    started = time.monotonic()
    result = pipeline.run()
    return result.job, options, time.monotonic() - started


@pytest.fixture(scope="module")
def built():
    args = ["--runner=DataflowRunner", *DATAFLOW_ARGS, *(f"--{name}={value}" for name, value in OCCUPANCY_ARGS.items())]
    return _dry_run(args)


@pytest.fixture(scope="module")
def job(built):
    return built[0]


@pytest.fixture(scope="module")
def topic_job():
    # The runner spelled as Beam also accepts it.
    job, _, _ = _dry_run(["--runner=dataflow", *DATAFLOW_ARGS, f"--input_topic={TOPIC}"])
    return job


def _transforms(job):
    return job.proto_pipeline.components.transforms


def _by_name(job):
    return {t.unique_name: t for t in _transforms(job).values()}


def _top_level(job):
    transforms = _transforms(job)
    roots = list(job.proto_pipeline.root_transform_ids)
    # Dataflow's translation wraps the graph in one unnamed composite; look inside it.
    while len(roots) == 1 and not transforms[roots[0]].spec.urn:
        roots = list(transforms[roots[0]].subtransforms)
    return [transforms[r].unique_name for r in roots]


def _second_level(job):
    return [n for n in _by_name(job) if n.count("/") == 1]


def _option_dests():
    return {dest: action.default for dest, action in option_actions().items()}


def test_every_occupancy_option_is_set_to_a_non_default_value():
    defaults = _option_dests()
    # Each of these selects another graph: a topic's read, a replay's read, the TIDES branch
    # (tests/test_tides_job.py builds and runs that one; its BigQuery sink is dry-run below).
    selecting = {"input_topic", "archive", "tides_output", "tides_bigquery", "gtfs_static"}
    assert set(OCCUPANCY_ARGS) | selecting == set(defaults)
    for name, value in OCCUPANCY_ARGS.items():
        assert value != defaults[name] and str(value) != str(defaults[name]), name


def test_dry_run_builds_a_streaming_job_offline_in_seconds(built):
    job, _, seconds = built
    assert job.proto.type == dataflow_v1beta3.JobType.JOB_TYPE_STREAMING
    assert job.proto.name == "occupancy"
    assert seconds < 60, f"the dry run took {seconds:.0f} s: is it reaching for the network?"


def test_top_level_step_labels_are_the_documented_ones(job, topic_job):
    assert _top_level(job) == TOP_LEVEL_STEPS
    assert _top_level(topic_job) == TOP_LEVEL_STEPS


def test_nested_step_labels_are_the_documented_ones(job, topic_job):
    assert sorted(_second_level(job)) == sorted(SECOND_LEVEL_STEPS)
    without_topic = [s for s in SECOND_LEVEL_STEPS if not s.startswith("WriteDeadLetters/")]
    assert sorted(_second_level(topic_job)) == sorted(without_topic + DEAD_LETTERS_TO_FIRESTORE_STEPS)
    assert STATEFUL_STEP in _by_name(job)


def test_readme_documents_the_same_step_labels():
    readme = (REPO / "docs" / "operations.md").read_text()
    line = next(ln for ln in readme.splitlines() if ln.startswith("Top-level steps:"))
    assert re.findall(r"`([^`]+)`", line) == TOP_LEVEL_STEPS
    for label in SECOND_LEVEL_STEPS + DEAD_LETTERS_TO_FIRESTORE_STEPS + [STATEFUL_STEP]:
        assert f"`{label}`" in readme, label


def test_stateful_step_keeps_its_state_and_timer_specs(job):
    transform = _by_name(job)[STATEFUL_STEP]
    assert transform.spec.urn == "beam:transform:pardo:v1"
    payload = beam_runner_api_pb2.ParDoPayload.FromString(transform.spec.payload)
    assert set(payload.state_specs) == {"train_cell", "later", "visits"}
    assert payload.state_specs["train_cell"].WhichOneof("spec") == "read_modify_write_spec"
    assert payload.state_specs["later"].WhichOneof("spec") == "bag_spec"
    assert payload.state_specs["visits"].WhichOneof("spec") == "read_modify_write_spec"
    # The Python SDK names a timer family "ts-<timer name>".
    assert set(payload.timer_family_specs) == {"ts-flush"}
    assert payload.timer_family_specs["ts-flush"].time_domain == beam_runner_api_pb2.TimeDomain.EVENT_TIME
    # Keyed input (state is per train_id) with a deterministic key encoding; the coders are part
    # of what --update checks, like the labels.
    components = job.proto_pipeline.components
    main_input = components.pcollections[next(iter(transform.inputs.values()))]
    kv = components.coders[main_input.coder_id]
    assert kv.spec.urn == "beam:coder:kv:v1"
    assert components.coders[kv.component_coder_ids[0]].spec.urn == "beam:coder:string_utf8:v1"


def test_pubsub_read_takes_no_id_label_from_an_unsigned_attribute(job, topic_job):
    for built_job, source in ((job, ("subscription", SUBSCRIPTION)), (topic_job, ("topic", TOPIC))):
        reads = [t for t in _transforms(built_job).values() if t.spec.urn == "beam:transform:pubsub_read:v1"]
        assert [r.unique_name for r in reads] == ["ReadEvents/Read"]
        payload = beam_runner_api_pb2.PubSubReadPayload.FromString(reads[0].spec.payload)
        assert getattr(payload, source[0]) == source[1]
        # No id_label: Dataflow would drop a real count whose event_id a junk message claimed
        # first (an attribute no signature covers); the fold de-duplicates by device and seq.
        assert payload.id_attribute == ""
        assert payload.with_attributes
        # The event time comes from the payload (ParseEvents), never from a read attribute.
        assert payload.timestamp_attribute == ""


def test_dead_letters_go_to_dataflows_pubsub_sink(job):
    # The write step carries Dataflow's Pub/Sub sink URN and the topic; it publishes as the
    # job's service account, which has roles/pubsub.publisher on this topic only (infra.sh).
    writes = [t for t in _transforms(job).values() if t.spec.urn == "beam:transform:pubsub_write:v1"]
    assert [w.unique_name for w in writes] == ["WriteDeadLetters/PublishDeadLetters/ParDo(_PubSubWriteDoFn)"]
    payload = beam_runner_api_pb2.PubSubWritePayload.FromString(writes[0].spec.payload)
    assert payload.topic == DEAD_LETTER_TOPIC


def test_workers_run_the_image_with_the_staged_project_and_streaming_engine(job):
    components = job.proto_pipeline.components
    assert len(components.environments) == 1
    environment = next(iter(components.environments.values()))
    docker = beam_runner_api_pb2.DockerPayload.FromString(environment.payload)
    assert docker.container_image == IMAGE
    staged = {
        beam_runner_api_pb2.ArtifactStagingToRolePayload.FromString(d.role_payload).staged_name
        for d in environment.dependencies
    }
    assert "workflow.tar.gz" in staged  # the sdist of setup.py (--setup_file)
    # The job environment the runner would send (built offline, as create_job does).
    env = apiclient.Environment(
        packages=[],
        options=job.options,
        environment_version="8",
        proto_pipeline_staged_url="gs://demo-occupancy-bucket/staging/pipeline.pb",
        proto_pipeline=job.proto_pipeline,
    ).proto
    assert {"enable_streaming_engine", "enable_windmill_service", "use_runner_v2"} <= set(env.experiments)
    assert env.worker_pools[0].worker_harness_container_image == IMAGE


def test_workers_receive_every_occupancy_option(built):
    job, options, _ = built
    env = apiclient.Environment(
        packages=[],
        options=job.options,
        environment_version="8",
        proto_pipeline_staged_url="gs://demo-occupancy-bucket/staging/pipeline.pb",
        proto_pipeline=job.proto_pipeline,
    ).proto
    sent = dict(env.sdk_pipeline_options["options"])
    for name in OCCUPANCY_ARGS:
        assert sent[name] == getattr(options, name), name


# --- the replay (templates/replay.json): the same steps in batch, from the archive -----------

REPLAY_ARGS = [
    "--archive=gs://demo-occupancy-archive/events/*",
    "--tides_output=gs://demo-occupancy-bucket/tides",
    "--gtfs_static=gs://demo-occupancy-bucket/gtfs/gtfs.zip",
    "--history_collection=history_replay",
]


@pytest.fixture(scope="module")
def replay_job():
    batch = [a for a in DATAFLOW_ARGS if a not in ("--streaming", "--enable_streaming_engine")]
    job, options, _ = _dry_run(["--runner=DataflowRunner", *batch, *REPLAY_ARGS])
    return job


def test_the_replay_builds_a_batch_job_of_the_same_steps_from_the_archive(replay_job):
    assert replay_job.proto.type == dataflow_v1beta3.JobType.JOB_TYPE_BATCH
    steps = [s for s in TOP_LEVEL_STEPS if s != "ReadEvents"]
    assert _top_level(replay_job) == ["ReadArchive", *steps[:3], "WriteTidesParquet", *steps[3:]]
    assert not [t for t in _transforms(replay_job).values() if "pubsub" in t.spec.urn]
    payload = beam_runner_api_pb2.ParDoPayload.FromString(_by_name(replay_job)[STATEFUL_STEP].spec.payload)
    assert "visits" in payload.state_specs and set(payload.timer_family_specs) == {"ts-flush"}


# --- the TIDES tables in BigQuery from the streaming job (--tides_bigquery) -------------------


def test_the_streaming_job_with_the_bigquery_sink_appends_checkpoints_then_commits():
    job, _, _ = _dry_run(
        [
            "--runner=DataflowRunner",
            *DATAFLOW_ARGS,
            f"--input_subscription={SUBSCRIPTION}",
            "--tides_bigquery=demo-occupancy-123.tides",
            "--gtfs_static=gs://demo-occupancy-bucket/gtfs/gtfs.zip",
        ]
    )
    assert job.proto.type == dataflow_v1beta3.JobType.JOB_TYPE_STREAMING
    assert _top_level(job) == [*TOP_LEVEL_STEPS[:4], "WriteTidesBigQuery", *TOP_LEVEL_STEPS[4:]]
    names = _by_name(job)
    for table in ("PassengerEvents", "StopVisits"):
        # Append and commit on either side of a Reshuffle (a checkpoint on Dataflow): a retried
        # append never commits the stream of an attempt the runner dropped.
        steps = [f"WriteTidesBigQuery/{step}{table}" for step in ("Append", "CheckpointStreams", "Commit")]
        assert all(step in names for step in steps), sorted(n for n in names if n.startswith("WriteTidesBigQuery/"))
    payload = beam_runner_api_pb2.ParDoPayload.FromString(names[STATEFUL_STEP].spec.payload)
    assert "visits" in payload.state_specs
