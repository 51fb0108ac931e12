"""The alert policies and the dashboard in deploy/monitoring/, checked offline: each body against
the Cloud Monitoring API's own discovery documents (v3 alert policies, v1 dashboards) as
google-api-python-client ships them; each metric a filter names is one Google's services
publish or one this code emits; each policy's runbook section exists; infra.sh creates them."""

import ast
import json
import pathlib
import re
import shlex
import subprocess

import googleapiclient
import pytest
from google.api_core import exceptions as gexc

REPO = pathlib.Path(__file__).resolve().parent.parent
MONITORING = REPO / "deploy" / "monitoring"
POLICIES = sorted((MONITORING / "policies").glob("*.json"))
DISCOVERY = pathlib.Path(googleapiclient.__file__).parent / "discovery_cache" / "documents"
# Google's own metrics the bodies may name (their descriptors are Google's, not this code's).
GOOGLE_METRICS = {
    "dataflow.googleapis.com/job/data_watermark_age",
    "dataflow.googleapis.com/job/system_lag",
    "dataflow.googleapis.com/job/is_failed",
    "run.googleapis.com/request_count",
    "run.googleapis.com/request_latencies",
}
USER_COUNTER = "dataflow.googleapis.com/job/user_counter"


def discovery(version: str) -> dict:
    return json.loads((DISCOVERY / f"monitoring.{version}.json").read_text())


def problems(value, schema: dict, schemas: dict, where: str) -> list:
    """What in `value` the discovery schema does not allow: unknown fields, wrong types, values
    outside an enum, durations that are not seconds. Output-only fields may not be sent."""
    if "$ref" in schema:
        schema = schemas[schema["$ref"]]
    kind = schema.get("type")
    if kind == "object" and "properties" in schema:
        if not isinstance(value, dict):
            return [f"{where}: not an object"]
        out = []
        for key, item in value.items():
            field = schema["properties"].get(key)
            if field is None:
                out.append(f"{where}.{key}: no such field")
            elif (field.get("description") or "").startswith("Output only"):
                out.append(f"{where}.{key}: output only")
            else:
                out += problems(item, field, schemas, f"{where}.{key}")
        return out
    if kind == "object":  # a map
        extra = schema.get("additionalProperties", {})
        return [p for key, item in value.items() for p in problems(item, extra, schemas, f"{where}[{key}]")]
    if kind == "array":
        if not isinstance(value, list):
            return [f"{where}: not a list"]
        return [p for i, item in enumerate(value) for p in problems(item, schema["items"], schemas, f"{where}[{i}]")]
    if kind == "string":
        if not isinstance(value, str):
            return [f"{where}: not a string"]
        if "enum" in schema and value not in schema["enum"]:
            return [f"{where}: {value!r} not one of {schema['enum']}"]
        if schema.get("format") == "google-duration" and not re.fullmatch(r"\d+(\.\d+)?s", value):
            return [f"{where}: {value!r} is not a duration"]
        return []
    if kind in ("integer", "number"):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return [] if ok else [f"{where}: not a number"]
    if kind == "boolean":
        return [] if isinstance(value, bool) else [f"{where}: not a boolean"]
    return []


def filters(body) -> list:
    """Every monitoring filter and PromQL query in a body."""
    if isinstance(body, dict):
        keys = (
            "filter",
            "denominatorFilter",
            "timeSeries",
            "goodServiceFilter",
            "badServiceFilter",
            "totalServiceFilter",
            "query",
            "prometheusQuery",
        )
        return [v for k, v in body.items() if k in keys] + [f for v in body.values() for f in filters(v)]
    if isinstance(body, list):
        return [f for v in body for f in filters(v)]
    return []


def counter_patterns() -> list:
    """The names the job's Beam counters take (Metrics.counter(namespace, name) in transforms/):
    an f-string's fields match anything."""
    out = []
    for path in (REPO / "transforms").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "counter" and len(node.args) == 2:
                name = node.args[1]
                if isinstance(name, ast.Constant):
                    out.append(re.escape(name.value))
                elif isinstance(name, ast.JoinedStr):
                    out.append(
                        "".join(re.escape(p.value) if isinstance(p, ast.Constant) else ".+" for p in name.values)
                    )
    return out


def prometheus_families() -> set:
    """The metric families the bridge and the API export, read from their /metrics text."""
    from fastapi.testclient import TestClient
    from prometheus_client.parser import text_string_to_metric_families

    from api.app import create_app
    from api.settings import Settings
    from bridge import health

    class Down:  # the API's families are there whatever Firestore answers
        def collection(self, name):
            raise gexc.ServiceUnavailable("down")

    text = health.metrics_text(health.Counters()).decode()
    with TestClient(create_app(Settings(), client=Down())) as http:
        text += http.get("/metrics").text
    out = set()
    for family in text_string_to_metric_families(text):
        kind = {"counter": "counter", "gauge": "gauge", "histogram": "histogram"}[family.type]
        suffix = "_total" if kind == "counter" else ""
        out.add(f"prometheus.googleapis.com/{family.name}{suffix}/{kind}")
    return out


@pytest.mark.parametrize("path", POLICIES, ids=lambda p: p.name)
def test_each_alert_policy_is_a_valid_body_with_a_runbook(path):
    v3 = discovery("v3")
    body = json.loads(path.read_text())
    assert problems(body, {"$ref": "AlertPolicy"}, v3["schemas"], path.name) == []
    assert body["displayName"] and body["conditions"] and body["combiner"] in ("OR", "AND")
    for condition in body["conditions"]:
        [kind] = [k for k in condition if k.startswith("condition")]
        assert condition["displayName"] and (condition[kind].get("filter") or condition[kind].get("query")), condition
    anchor = re.search(r"docs/runbook\.md#([a-z0-9-]+)", body["documentation"]["content"]).group(1)
    headings = [
        re.sub(r"[^a-z0-9 -]", "", line[3:].strip().lower()).replace(" ", "-")
        for line in (REPO / "docs" / "runbook.md").read_text().splitlines()
        if line.startswith("## ")
    ]
    assert anchor in headings, (anchor, headings)


def test_the_dashboard_is_a_valid_body():
    v1 = discovery("v1")
    body = json.loads((MONITORING / "dashboard.json").read_text())
    assert problems(body, {"$ref": "Dashboard"}, v1["schemas"], "dashboard") == []
    tiles = body["mosaicLayout"]["tiles"]
    assert all(t["xPos"] + t["width"] <= body["mosaicLayout"]["columns"] for t in tiles)


def test_the_service_and_its_slos_are_valid_bodies_on_googles_metrics():
    v3 = discovery("v3")["schemas"]
    service = json.loads((MONITORING / "service.json").read_text())
    assert problems(service, {"$ref": "Service"}, v3, "service") == [] and "custom" in service
    slos = sorted((MONITORING / "slos").glob("*.json"))
    assert [p.stem for p in slos] == ["count-freshness", "feed-availability"]
    for path in slos:
        slo = json.loads(path.read_text())
        assert problems(slo, {"$ref": "ServiceLevelObjective"}, v3, path.name) == []
        assert 0.9 <= slo["goal"] < 1 and slo["rollingPeriod"] == f"{28 * 86400}s"
    freshness = json.loads(slos[0].read_text())["serviceLevelIndicator"]["windowsBased"]
    assert freshness["metricMeanInRange"]["range"]["max"] == 10  # counts visible within 10 s


def test_the_validator_catches_what_the_api_would_refuse():
    v3 = discovery("v3")["schemas"]
    good = json.loads(POLICIES[0].read_text())
    for broken, expected in (
        ({**good, "combinator": "OR"}, "no such field"),
        ({**good, "combiner": "XOR"}, "not one of"),
        ({**good, "conditions": {"a": 1}}, "not a list"),
        ({**good, "conditions": [{"displayName": "x", "conditionThreshold": {"duration": "5 minutes"}}]}, "duration"),
    ):
        found = problems(broken, {"$ref": "AlertPolicy"}, v3, "p")
        assert found and expected in " ".join(found), (broken, found)


def test_every_metric_named_is_googles_or_emitted_by_this_code():
    files = [*POLICIES, MONITORING / "dashboard.json", *sorted((MONITORING / "slos").glob("*.json"))]
    bodies = [json.loads(p.read_text()) for p in files]
    patterns, families = counter_patterns(), prometheus_families()
    # A name the code makes, with each f-string field filled in.
    samples = [re.sub(r"\.\+", "x", p.replace("\\", "")) for p in patterns]
    named = set()
    for text in (f for body in bodies for f in filters(body)):
        promql = re.findall(r'dataflow_googleapis_com:job_user_counter\{[^}]*metric_name(=~?)"([^"]+)"', text)
        if promql:  # PromQL on Dataflow's user counters: a name, or a regex of names
            named.add(USER_COUNTER)
            for how, name in promql:
                if how == "=":  # a name the code writes as it is, not one of a family's
                    assert name in [re.sub(r"\\(.)", r"\1", p) for p in patterns if ".+" not in p], name
                else:
                    assert any(re.fullmatch(name, sample) for sample in samples), (name, samples)
            continue
        burn = (
            r'select_slo_burn_rate\("projects/PROJECT_ID/services/occupancy/serviceLevelObjectives/([a-z-]+)", "\d+s"\)'
        )
        slo = re.fullmatch(burn, text)
        if slo:  # a burn rate: of one of the SLOs infra.sh creates
            assert (MONITORING / "slos" / f"{slo.group(1)}.json").exists(), text
            continue
        [metric] = re.findall(r'metric\.type = "([^"]+)"', text)
        named.add(metric)
        if metric == USER_COUNTER:
            # A counter's name, or a prefix or suffix of the names: one the job's code makes.
            [(how, name)] = re.findall(r'metric\.labels\.metric_name = (?:(starts_with|ends_with)\()?"([^"]+)"', text)
            probe = {"starts_with": name + "x", "ends_with": "x" + name}.get(how, name)
            assert any(re.fullmatch(p, probe) for p in patterns), (name, how)
        elif metric.startswith("prometheus.googleapis.com/"):
            assert metric in families, (metric, sorted(families))
        else:
            assert metric in GOOGLE_METRICS, metric
    assert {USER_COUNTER, "run.googleapis.com/request_count", "dataflow.googleapis.com/job/data_watermark_age"} <= named
    assert len(named) >= 10


def test_infra_creates_each_policy_and_the_dashboard():
    out = subprocess.run(
        ["bash", str(REPO / "deploy" / "infra.sh"), "--dry-run", "--project", "demo-occupancy-123"]
        + [
            "--region",
            "europe-west1",
            "--bucket",
            "b-123",
            "--notification-channel",
            "projects/p/notificationChannels/7",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    commands = [shlex.split(line) for line in out.stdout.splitlines() if line.strip()]
    made = [c for c in commands if c[:5] == ["gcloud", "alpha", "monitoring", "policies", "create"]]
    assert sorted(next(a.split("=", 1)[1] for a in c if a.startswith("--policy-from-file=")) for c in made) == [
        str(p) for p in POLICIES
    ]
    assert all("--notification-channels=projects/p/notificationChannels/7" in c for c in made)
    [dashboard] = [c for c in commands if c[:4] == ["gcloud", "monitoring", "dashboards", "create"]]
    assert f"--config-from-file={MONITORING / 'dashboard.json'}" in dashboard
    # The SLOs exist before the policies that watch their burn rate.
    first_policy = next(
        i for i, c in enumerate(commands) if c[:5] == ["gcloud", "alpha", "monitoring", "policies", "create"]
    )
    assert max(i for i, c in enumerate(commands) if c[0] == "curl") < first_policy
    posted = {c[4]: c[6] for c in commands if c[0] == "curl"}
    api = "https://monitoring.googleapis.com/v3/projects/demo-occupancy-123/services"
    assert posted == {
        f"{api}?serviceId=occupancy": f"@{MONITORING / 'service.json'}",
        **{
            f"{api}/occupancy/serviceLevelObjectives?serviceLevelObjectiveId={p.stem}": f"@{p}"
            for p in sorted((MONITORING / "slos").glob("*.json"))
        },
    }


def test_the_ops_agent_scrapes_the_bridge_where_the_bridge_serves_its_metrics():
    """deploy/monitoring/ops-agent-bridge.yaml: one Prometheus receiver in a pipeline, its target the
    bridge's default --health_port on the loopback, its path one the bridge answers in the
    Prometheus text format with the families the bridge's policy reads."""
    import urllib.request

    import yaml
    from prometheus_client.parser import text_string_to_metric_families

    from bridge import health
    from bridge.__main__ import build_parser

    metrics = yaml.safe_load((MONITORING / "ops-agent-bridge.yaml").read_text())["metrics"]
    [(name, receiver)] = metrics["receivers"].items()
    assert receiver["type"] == "prometheus"
    assert [p["receivers"] for p in metrics["service"]["pipelines"].values()] == [[name]]
    [scrape] = receiver["config"]["scrape_configs"]
    [[target]] = [c["targets"] for c in scrape["static_configs"]]
    host, port = target.rsplit(":", 1)
    assert (host, int(port)) == ("127.0.0.1", build_parser().get_default("health_port"))

    server = health.serve(health.Counters(), 0)
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}{scrape['metrics_path']}"
        with urllib.request.urlopen(url, timeout=10) as answer:
            assert answer.status == 200
            families = {f.name for f in text_string_to_metric_families(answer.read().decode())}
    finally:
        server.shutdown()
        server.server_close()
    policy = (MONITORING / "policies" / "bridge-not-forwarding.json").read_text()
    named = set(re.findall(r"prometheus\.googleapis\.com/([a-z_]+?)(?:_total)?/", policy))
    assert named and named <= families, (named, families)
