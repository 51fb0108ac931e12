"""The deployment script, offline: deploy/infra.sh (`bash -n` and the commands its --dry-run
prints), parsed with the tools' own parsers where there is one. The make targets:
tests/test_make_targets.py."""

import os
import shlex
import subprocess

import pytest

from tests.support import REPO_ROOT, flag_values

INFRA = REPO_ROOT / "deploy" / "infra.sh"


# --- deploy/infra.sh ------------------------------------------------------------

PIPELINE_SA = "serviceAccount:occupancy-pipeline@demo-occupancy-123.iam.gserviceaccount.com"
DEVICE_SA = "serviceAccount:occupancy-device@demo-occupancy-123.iam.gserviceaccount.com"
API_SA = "serviceAccount:occupancy-api@demo-occupancy-123.iam.gserviceaccount.com"
P = "--project=demo-occupancy-123"
EXPECTED_BINDINGS = [
    [
        "gcloud",
        "pubsub",
        "subscriptions",
        "add-iam-policy-binding",
        "occupancy-pipeline",
        P,
        f"--member={PIPELINE_SA}",
        "--role=roles/pubsub.subscriber",
    ],
    [
        "gcloud",
        "pubsub",
        "subscriptions",
        "add-iam-policy-binding",
        "occupancy-pipeline",
        P,
        f"--member={PIPELINE_SA}",
        "--role=roles/pubsub.viewer",
    ],
    [
        "gcloud",
        "pubsub",
        "topics",
        "add-iam-policy-binding",
        "occupancy-dead-letters",
        P,
        f"--member={PIPELINE_SA}",
        "--role=roles/pubsub.publisher",
    ],
    [
        "gcloud",
        "projects",
        "add-iam-policy-binding",
        "demo-occupancy-123",
        f"--member={PIPELINE_SA}",
        "--role=roles/datastore.user",
        "--condition=None",
    ],
    [
        "gcloud",
        "projects",
        "add-iam-policy-binding",
        "demo-occupancy-123",
        f"--member={PIPELINE_SA}",
        "--role=roles/dataflow.worker",
        "--condition=None",
    ],
    [
        "gcloud",
        "storage",
        "buckets",
        "add-iam-policy-binding",
        "gs://demo-occupancy-bucket",
        f"--member={PIPELINE_SA}",
        "--role=roles/storage.objectAdmin",
    ],
    [
        "gcloud",
        "artifacts",
        "repositories",
        "add-iam-policy-binding",
        "occupancy",
        P,
        "--location=europe-west1",
        f"--member={PIPELINE_SA}",
        "--role=roles/artifactregistry.reader",
    ],
    [
        "gcloud",
        "pubsub",
        "topics",
        "add-iam-policy-binding",
        "occupancy-events",
        P,
        f"--member={DEVICE_SA}",
        "--role=roles/pubsub.publisher",
    ],
    [
        "gcloud",
        "projects",
        "add-iam-policy-binding",
        "demo-occupancy-123",
        f"--member={API_SA}",
        "--role=roles/datastore.user",
        "--condition=None",
    ],
    [
        "gcloud",
        "projects",
        "add-iam-policy-binding",
        "demo-occupancy-123",
        f"--member={API_SA}",
        "--role=roles/firebaseauth.viewer",
        "--condition=None",
    ],
    [
        "gcloud",
        "projects",
        "add-iam-policy-binding",
        "demo-occupancy-123",
        f"--member={API_SA}",
        "--role=roles/monitoring.metricWriter",
        "--condition=None",
    ],
]
EXPECTED_RESOURCES = [
    ["gcloud", "pubsub", "topics", "create", "occupancy-events", P],
    ["gcloud", "pubsub", "topics", "create", "occupancy-dead-letters", P],
    [
        "gcloud",
        "pubsub",
        "subscriptions",
        "create",
        "occupancy-pipeline",
        P,
        "--topic=occupancy-events",
        "--ack-deadline=60",
        "--message-retention-duration=7d",
        "--expiration-period=never",
    ],
    [
        "gcloud",
        "pubsub",
        "subscriptions",
        "create",
        "occupancy-dead-letters",
        P,
        "--topic=occupancy-dead-letters",
        "--message-retention-duration=7d",
        "--expiration-period=never",
    ],
    [
        "gcloud",
        "storage",
        "buckets",
        "create",
        "gs://demo-occupancy-bucket",
        P,
        "--location=europe-west1",
        "--uniform-bucket-level-access",
    ],
    [
        "gcloud",
        "firestore",
        "indexes",
        "composite",
        "create",
        P,
        "--database=(default)",
        "--collection-group=history",
        "--query-scope=collection",
        "--field-config=field-path=train,order=ascending",
        "--field-config=field-path=timestamp,order=descending",
        "--async",
    ],
    [
        "gcloud",
        "firestore",
        "indexes",
        "composite",
        "create",
        P,
        "--database=(default)",
        "--collection-group=history",
        "--query-scope=collection",
        "--field-config=field-path=train,order=ascending",
        "--field-config=field-path=timestamp,order=ascending",
        "--async",
    ],
    [
        "gcloud",
        "firestore",
        "indexes",
        "fields",
        "update",
        "timestamp",
        P,
        "--database=(default)",
        "--collection-group=history",
        "--disable-indexes",
        "--async",
    ],
]


@pytest.fixture(scope="module")
def dry_run_commands():
    env = {k: v for k, v in os.environ.items() if k not in ("PROJECT", "REGION", "BUCKET")}
    out = subprocess.run(
        [
            "bash",
            str(INFRA),
            "--dry-run",
            "--project",
            "demo-occupancy-123",
            "--region",
            "europe-west1",
            "--bucket",
            "gs://demo-occupancy-bucket",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    return [shlex.split(line) for line in out.stdout.splitlines() if line.strip()]


def test_infra_script_is_valid_bash():
    out = subprocess.run(["bash", "-n", str(INFRA)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_infra_dry_run_grants_least_privilege(dry_run_commands):
    bindings = [c for c in dry_run_commands if "add-iam-policy-binding" in c]
    assert sorted(map(tuple, bindings)) == sorted(map(tuple, EXPECTED_BINDINGS))
    roles = " ".join(" ".join(c) for c in dry_run_commands)
    for broad in (
        "roles/owner",
        "roles/editor",
        "roles/pubsub.editor",
        "roles/pubsub.admin",
        "roles/storage.admin",
        "roles/datastore.owner",
        "roles/dataflow.admin",
    ):
        assert broad not in roles


def test_infra_dry_run_creates_the_resources(dry_run_commands):
    for expected in EXPECTED_RESOURCES:
        assert expected in dry_run_commands, expected
    accounts = [c[4] for c in dry_run_commands if c[:4] == ["gcloud", "iam", "service-accounts", "create"]]
    assert accounts == ["occupancy-pipeline", "occupancy-device", "occupancy-api"]
    # gcloud, and for what it has no command for (the SLOs), the Monitoring API.
    others = [c for c in dry_run_commands if c[0] != "gcloud"]
    assert others and all(c[0] == "curl" and c[4].startswith("https://monitoring.googleapis.com/v3/") for c in others)


def _infra_dry_run(*extra):
    env = {k: v for k, v in os.environ.items() if k not in ("PROJECT", "REGION", "BUCKET")}
    base = ["--project", "demo-occupancy-123", "--region", "europe-west1", "--bucket", "b-123"]
    return subprocess.run(
        ["bash", str(INFRA), "--dry-run", *base, *extra], capture_output=True, text=True, timeout=60, env=env
    )


def _one(commands, *prefix):
    [found] = [c for c in commands if c[: len(prefix)] == list(prefix)]
    return found


def test_infra_puts_a_rate_limit_per_client_in_front_of_the_api():
    out = _infra_dry_run("--api-domain", "api.example.org", "--api-rate-limit", "120")
    assert out.returncode == 0, out.stderr
    commands = [shlex.split(line) for line in out.stdout.splitlines() if line.strip()]
    compute = ["gcloud", "compute"]
    # Follow the path of a request: address:443 -> proxy (certificate) -> URL map -> backend -> Cloud Run.
    rule = _one(commands, *compute, "forwarding-rules", "create")
    assert flag_values(rule)["ports"] == "443" and "--global" in rule
    proxy = _one(commands, *compute, "target-https-proxies", "create", flag_values(rule)["target-https-proxy"])
    cert = _one(commands, *compute, "ssl-certificates", "create", flag_values(proxy)["ssl-certificates"])
    assert flag_values(cert)["domains"] == "api.example.org"
    url_map = _one(commands, *compute, "url-maps", "create", flag_values(proxy)["url-map"])
    backend = flag_values(url_map)["default-service"]
    attached = _one(commands, *compute, "backend-services", "add-backend", backend)
    neg = _one(commands, *compute, "network-endpoint-groups", "create", flag_values(attached)["network-endpoint-group"])
    assert flag_values(neg)["cloud-run-service"] == "occupancy-api" and flag_values(neg)["region"] == "europe-west1"
    # The backend answers through the Cloud Armor policy, whose rule limits each client address.
    policy = flag_values(_one(commands, *compute, "backend-services", "update", backend))["security-policy"]
    for verb in ("create", "update"):
        limit = flag_values(_one(commands, *compute, "security-policies", "rules", verb))
        assert limit["security-policy"] == policy
        assert (limit["action"], limit["exceed-action"], limit["enforce-on-key"]) == ("throttle", "deny-429", "IP")
        assert (limit["rate-limit-threshold-count"], limit["rate-limit-threshold-interval-sec"]) == ("120", "60")
        assert (limit["src-ip-ranges"], limit["conform-action"]) == ("*", "allow")
    _one(commands, *compute, "security-policies", "create", policy)


def test_infra_without_a_domain_creates_no_edge_and_refuses_a_bad_one(dry_run_commands):
    assert not [c for c in dry_run_commands if c[:2] == ["gcloud", "compute"]]
    for bad in (("--api-domain", "not a domain"), ("--api-domain", "a.example.org", "--api-rate-limit", "0")):
        out = _infra_dry_run(*bad)
        assert out.returncode == 2 and not out.stdout, out.stdout
        assert "infra.sh: not a" in out.stderr


def test_infra_refuses_to_run_without_project(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PROJECT", "REGION", "BUCKET")}
    out = subprocess.run(
        ["bash", str(INFRA), "--dry-run", "--region", "europe-west1", "--bucket", "b-123"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert out.returncode != 0
    assert "--project" in out.stderr and out.stdout == ""
