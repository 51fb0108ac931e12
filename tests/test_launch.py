"""pipeline/launch.py offline: a real Dataflow v1b3 client built from the discovery document
stored in tests/data, over googleapiclient's HttpMockSequence (no network): the requests it
sends, and how API errors reach the operator."""

import io
import json
import pathlib

import pytest
from googleapiclient.discovery import build_from_document
from googleapiclient.http import HttpMockSequence

from pipeline import launch

DISCOVERY = (pathlib.Path(__file__).parent / "data" / "dataflow.v1b3.json").read_text()
BASE = ["--project", "demo-occupancy-123", "--region", "europe-west1"]
SPEC = "gs://demo-occupancy-bucket/templates/occupancy-v1.json"


def client_with(*responses):
    """A client whose HTTP answers `responses` ((status, body dict) each) in order; .http.request_sequence
    is filled with (uri, method, body, headers) of every request sent."""
    sequence = [({"status": str(status)}, json.dumps(body)) for status, body in responses]
    http = HttpMockSequence(sequence)
    http.request_sequence = sequence
    sent = []
    original = http.request

    def request(uri, method="GET", body=None, headers=None, **kw):
        sent.append((uri, method, json.loads(body) if body else None))
        return original(uri, method, body, headers, **kw)

    http.request = request
    client = build_from_document(DISCOVERY, http=http)
    return client, sent


def run(argv, client):
    out = io.StringIO()
    code = launch.run(launch.build_parser().parse_args(argv), client, out)
    return code, out.getvalue()


def test_launch_sends_the_template_parameters_and_environment():
    client, sent = client_with((200, {"job": {"id": "2026-11-29_01", "name": "occupancy"}}))
    code, out = run(
        [
            "launch",
            *BASE,
            "--template",
            SPEC,
            "--parameter",
            "input_subscription=projects/p/subscriptions/s",
            "--parameter",
            "daily_reset=03:00",
            "--service_account",
            "sa@p.iam.gserviceaccount.com",
            "--staging_location",
            "gs://b/staging",
            "--temp_location",
            "gs://b/tmp",
            "--max_workers",
            "4",
        ],
        client,
    )
    assert code == 0 and "launched occupancy: job 2026-11-29_01" in out
    [(uri, method, body)] = sent
    assert method == "POST"
    assert "/v1b3/projects/demo-occupancy-123/locations/europe-west1/flexTemplates:launch" in uri
    assert body == {
        "validateOnly": False,
        "launchParameter": {
            "jobName": "occupancy",
            "containerSpecGcsPath": SPEC,
            "parameters": {"input_subscription": "projects/p/subscriptions/s", "daily_reset": "03:00"},
            "environment": {
                "enableStreamingEngine": True,
                "serviceAccountEmail": "sa@p.iam.gserviceaccount.com",
                "stagingLocation": "gs://b/staging",
                "tempLocation": "gs://b/tmp",
                "maxWorkers": 4,
            },
        },
    }


def test_update_with_transform_name_mappings():
    client, sent = client_with((200, {"job": {"id": "j2"}}))
    code, out = run(
        [
            "launch",
            *BASE,
            "--template",
            SPEC,
            "--update",
            "--transform_name_mapping",
            "ParseEvents=Parse",
            "--transform_name_mapping",
            "Old/Step=New/Step",
        ],
        client,
    )
    assert code == 0 and "updated occupancy" in out
    parameter = sent[0][2]["launchParameter"]
    assert parameter["update"] is True
    assert parameter["transformNameMappings"] == {"ParseEvents": "Parse", "Old/Step": "New/Step"}


def test_a_batch_launch_asks_for_no_streaming_engine_and_is_never_an_update():
    client, sent = client_with((200, {"job": {"id": "r1", "name": "occupancy-replay"}}))
    argv = ["launch", "--batch", *BASE, "--job_name", "occupancy-replay", "--template", SPEC]
    code, out = run([*argv, "--parameter", "archive=gs://b/events/*"], client)
    assert code == 0 and "launched occupancy-replay: job r1" in out
    parameter = sent[0][2]["launchParameter"]
    assert parameter["environment"] == {} and parameter["parameters"] == {"archive": "gs://b/events/*"}
    assert "update" not in parameter
    with pytest.raises(launch.LaunchError, match="not updated in place"):
        run([*argv, "--update"], client)
    assert len(sent) == 1


def test_mappings_without_update_and_bad_pairs_are_refused_before_any_request():
    client, sent = client_with()
    with pytest.raises(launch.LaunchError, match="only apply to --update"):
        run(["launch", *BASE, "--template", SPEC, "--transform_name_mapping", "A=B"], client)
    with pytest.raises(launch.LaunchError, match="KEY=VALUE"):
        run(["launch", *BASE, "--template", SPEC, "--parameter", "novalue"], client)
    assert sent == []


def test_drain_finds_the_active_job_by_name_and_requests_drained():
    client, sent = client_with(
        (
            200,
            {
                "jobs": [
                    {"id": "old", "name": "occupancy", "createTime": "2026-11-01T00:00:00Z"},
                    {"id": "new", "name": "occupancy", "createTime": "2026-11-28T00:00:00Z"},
                    {"id": "x", "name": "occupancy-other", "createTime": "2026-11-29T00:00:00Z"},
                ]
            },
        ),
        (200, {"id": "new", "requestedState": "JOB_STATE_DRAINED"}),
    )
    code, out = run(["drain", *BASE], client)
    assert code == 0 and "drain requested for job new" in out
    (list_uri, _, _), (update_uri, method, body) = sent
    assert "filter=ACTIVE" in list_uri and "name=occupancy" in list_uri
    assert method == "PUT" and update_uri.split("?")[0].endswith("/locations/europe-west1/jobs/new")
    assert body == {"requestedState": "JOB_STATE_DRAINED"}


def test_cancel_by_id():
    client, sent = client_with((200, {"id": "j9"}))
    assert run(["cancel", *BASE, "--job_id", "j9"], client)[0] == 0
    assert sent[0][2] == {"requestedState": "JOB_STATE_CANCELLED"}


def test_status_reports_state_workers_and_our_counters():
    metrics = {
        "metrics": [
            {
                "name": {"origin": "user", "name": "parsed", "context": {"namespace": "occupancy", "step": "s1"}},
                "scalar": 120,
            },
            {
                "name": {"origin": "user", "name": "parsed", "context": {"namespace": "occupancy", "step": "s2"}},
                "scalar": 5,
            },
            {
                "name": {
                    "origin": "user",
                    "name": "parsed",
                    "context": {"namespace": "occupancy", "step": "s1", "tentative": "true"},
                },
                "scalar": 999,
            },
            {
                "name": {"origin": "user", "name": "rejected_malformed", "context": {"namespace": "occupancy"}},
                "scalar": 3,
            },
            {"name": {"origin": "user", "name": "other", "context": {"namespace": "someone-else"}}, "scalar": 7},
            {"name": {"origin": "dataflow/v1b3", "name": "CurrentNumWorkers"}, "scalar": 2},
        ]
    }
    client, sent = client_with(
        (
            200,
            {
                "id": "j1",
                "name": "occupancy",
                "currentState": "JOB_STATE_RUNNING",
                "currentStateTime": "2026-11-29T08:00:00Z",
                "type": "JOB_TYPE_STREAMING",
            },
        ),
        (200, metrics),
    )
    code, out = run(["status", *BASE, "--job_id", "j1", "--json"], client)
    assert code == 0
    status = json.loads(out)
    assert status["state"] == "JOB_STATE_RUNNING" and status["workers"] == 2
    assert status["counters"] == {"parsed": 125, "rejected_malformed": 3}
    assert "view=JOB_VIEW_SUMMARY" in sent[0][0] and sent[1][0].split("?")[0].endswith("/jobs/j1/metrics")


@pytest.mark.parametrize(
    "status,message",
    [
        (404, "not found: Job nope not found"),
        (409, "rejected (conflict): The new job is not compatible"),
        (403, "permission denied: Permission 'dataflow.jobs.update' denied"),
    ],
)
def test_api_errors_become_one_line_and_exit_1(status, message, capsys):
    error = {"error": {"code": status, "message": message.split(": ", 1)[1], "status": "X"}}
    sequence = [(status, error)] * 4  # the client retries nothing for 4xx; spares are harmless
    client, _ = client_with(*sequence)
    argv = ["launch", *BASE, "--template", SPEC, "--update"] if status == 409 else ["cancel", *BASE, "--job_id", "nope"]
    assert launch.main(argv, client=client) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err


def test_no_active_job_is_a_clear_error(capsys):
    client, _ = client_with((200, {"jobs": []}))
    assert launch.main(["drain", *BASE, "--job_name", "ghost"], client=client) == 1
    assert "no active job named ghost" in capsys.readouterr().err


def test_complete_spec_puts_back_the_streaming_fields():
    spec = {
        "image": "img",
        "metadata": {"name": "Train occupancy", "parameters": [{"name": "a"}]},
        "sdkInfo": {"language": "PYTHON"},
    }
    metadata = json.loads((pathlib.Path(__file__).parent.parent / "templates" / "metadata.json").read_text())
    done = launch.complete_spec(spec, metadata)
    assert done["metadata"]["streaming"] is True and done["metadata"]["defaultStreamingMode"] == "EXACTLY_ONCE"
    assert done["metadata"]["parameters"] == [{"name": "a"}] and done["image"] == "img"
    assert "streaming" not in spec["metadata"]  # the input is left alone
