"""`python -m bench --smoke`: the benchmark runs end to end and writes results of the documented shape.

Only the shape and sane values are checked, never the performance targets:
those are for `make bench` on a quiet machine (docs/benchmarks.md).
"""

import datetime
import json
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
RUNS = ("pipeline", "ceiling", "naive", "naive_concurrent")
RUN_KEYS = (
    "msgs_per_s",
    "latency_p50_s",
    "latency_p95_s",
    "latency_p99_s",
    "firestore_writes_per_1000",
    "firestore_reads_per_1000",
    "peak_rss_mb",
    "counts_exact",
    "count_error",
)


@pytest.mark.emulator
@pytest.mark.timeout(240)
def test_smoke_benchmark_writes_results_of_the_full_shape(tmp_path):
    completed = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", f"--output={tmp_path}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=230,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    assert "pipeline, streaming" in completed.stdout  # the one table
    results = json.loads((tmp_path / "results.json").read_text())
    assert (tmp_path / "results.md").read_text().count("\n|") >= 8

    for run in RUNS:
        assert set(RUN_KEYS) <= set(results[run]), run
        row = results[run]
        assert row["msgs_per_s"] > 0 and row["firestore_writes_per_1000"] > 0, run
        assert row["peak_rss_mb"] > 0 and row["count_error"] >= 0, run
        assert isinstance(row["counts_exact"], bool), run
    assert results["naive"]["latency_p95_s"] is None  # sequential: not measured
    for run in ("pipeline", "ceiling", "naive_concurrent"):
        row = results[run]
        assert 0 < row["latency_p50_s"] <= row["latency_p95_s"] <= row["latency_p99_s"], run

    # This pipeline is exact; the naive baseline costs 2 reads and 2 writes per message.
    assert results["pipeline"]["counts_exact"] is True and results["pipeline"]["count_error"] == 0
    assert results["pipeline"]["firestore_reads_per_1000"] > 0
    assert results["naive"]["firestore_reads_per_1000"] == 2000
    assert results["naive"]["firestore_writes_per_1000"] == 2000
    # Realtime shows an event only after its bucket and the reorder delay.
    assert results["pipeline"]["latency_p50_s"] >= results["reorder_delay_s"]

    harness = results["harness"]
    assert harness["pipeline_msgs_per_s_per_core"] > 0 and harness["passthrough_msgs_per_s_per_core"] > 0
    assert harness["parse_fold_msgs_per_s_per_core"] > 0 and harness["pipeline_counts_exact"] is True

    # The job as Dataflow runs it, and its levers side by side: every run exact, the ratios shown.
    fn_api = results["fn_api"]
    assert set(fn_api["runs"]) == {
        "job",
        "unverified",
        "flush_1s",
        "flush_30s",
        "bundles_of_20",
    }
    runs = fn_api["runs"]
    assert runs["flush_1s"]["flushes"] > runs["job"]["flushes"] >= runs["flush_30s"]["flushes"] > 0
    assert runs["flush_30s"]["flush_interval_s"] == 30.0 and runs["flush_30s"]["messages"] == runs["job"]["messages"]
    # A smoke run's CPU is mostly start-up: the model's figures are only there, not yet meaningful.
    assert set(fn_api["cost_model"]) == {
        "cpu_ms_per_message",
        "cpu_ms_per_flush",
        "flushes_per_message_at_tenth_of_passthrough",
    }
    assert runs["job"]["state_requests"]["per_flush_by_cell"]["train_cell get"] > 0
    assert runs["bundles_of_20"]["per_bundle"] == 20 and 0 < fn_api["job_vs_passthrough_in_bundles_of_20"] < 1
    assert "CPU over the Fn API" in (tmp_path / "results.md").read_text()
    assert fn_api["counts_exact"] is True and fn_api["runs"]["job"]["mode"] == "multi_threading"
    assert fn_api["runs"]["unverified"]["device_auth"] == "off"
    assert 0 < fn_api["job_vs_passthrough"] < 1 and fn_api["signature_cpu_overhead_pct"] is not None
    replay = results["replay"]  # the archived fleet replayed into the TIDES tables
    assert replay["rows_per_s_per_core"] > 0 and replay["stop_visit_rows"] >= replay["stops"] > 0
    assert replay["boardings"] == replay["boardings_truth"] and replay["stops_exact"] > 0
    # The flush policy replayed in event time: the policy before and each interval, on one workload.
    policy = results["flush_policy"]["rows"]
    assert [(r["policy"], r["flush_interval_s"]) for r in policy] == [("before", 1.0)] + [
        ("now", s) for s in (1.0, 2.0, 5.0, 10.0)
    ]
    assert len({r["messages"] for r in policy}) == 1 and all(r["stops"] > 0 for r in policy)
    assert policy[0]["flushes_per_message"] > policy[3]["flushes_per_message"] > 0
    targets = {t["target"] for t in results["targets"]}
    assert "the job over the Fn API (4 bundle processors) >= 0.10 x pass-through" in targets
    assert "the job over the Fn API in bundles of 20 messages >= 0.5 x pass-through" in targets
    assert any(t.startswith("a stop's departure load applied at p95") for t in targets)
    assert "flush policy (event time)" in completed.stdout
    assert "the job over the Fn API (multi_threading)" in completed.stdout

    assert results["workload"]["messages"] > 0 and results["workload"]["trains"] == 3
    assert results["machine"]["cores"] >= 1 and results["machine"]["memory_mb"] > 0
    assert results["flush_interval_s"] == 5.0 and results["reorder_delay_s"] == 2.0
    assert set(results["ratios"]) == {
        "pipeline_vs_ceiling",
        "writes_vs_naive",
        "reads_vs_naive",
        "harness_vs_passthrough",
    }
    assert all(value > 0 for value in results["ratios"].values())
    assert {t["target"] for t in results["targets"]} and all(isinstance(t["pass"], bool) for t in results["targets"])

    # The API row: the cache off reads the whole fleet per request (two queries, one read per
    # document); with the cache, most requests read nothing.
    serving = results["serving"]
    uncached, cached = serving["uncached"], serving["cached"]
    assert uncached["trains_served"] == cached["trains_served"] == 10
    assert uncached["firestore_queries_per_request"] == 2 and uncached["firestore_reads_per_request"] == 20
    assert cached["firestore_reads_per_request"] < uncached["firestore_reads_per_request"]
    # With the listeners nothing is read per request: no document changes while they are timed.
    assert serving["listener"]["trains_served"] == 10 and serving["listener"]["firestore_reads_per_request"] == 0
    # Documents changing while they are timed: still served, and what the listeners are billed
    # for is per change (one read for each document a snapshot delivers changed), not per request.
    changing = serving["listener_changing"]
    assert changing["documents_changed"] > 0 and changing["failed_requests"] == 0, changing
    cost = serving["listener_cost"]
    assert 0 < cost["trains_changed"] <= cost["firestore_reads"] <= cost["documents_changed"], cost
    assert cost["first_snapshot_reads"] == 20, cost  # 10 realtime + 10 trains documents, once
    feed = serving["listener_feed"]
    assert feed["path"].endswith(".pb") and feed["firestore_reads_per_request"] == 0
    assert all(serving[k]["failed_requests"] == 0 for k in ("uncached", "cached", "listener", "listener_feed"))
    assert 0 < cached["p50_ms"] <= cached["p95_ms"] and 0 < uncached["p50_ms"] <= uncached["p95_ms"]
    assert "GET /v1/trains" in completed.stdout
    assert serving["feed"]["trains"] == 10 and serving["feed"]["bytes"] > 0 and serving["feed"]["build_ms_p50"] > 0
    # Change to visible: every write shows on GET /v1/trains, through the cache and the listeners.
    cache, listener = serving["visible"]
    assert (cache["mode"], listener["mode"]) == ("fleet cache 1 s", "listener")
    for run in (cache, listener):
        assert run["documents_changed"] > 0 and run["visible"] == run["documents_changed"], run
        assert run["never_visible"] == 0 and 0 < run["visible_p50_s"] <= run["visible_p95_s"], run
    assert "change to visible" in completed.stdout
    assert sum("a change visible" in t["target"] for t in results["targets"]) == 2
    assert serving["dashboard"]["rows"] == 5 and serving["dashboard"]["first_paint_ms_p50"] > 0


@pytest.mark.emulator
@pytest.mark.timeout(240)
def test_bench_scale_smoke_gives_the_curve_state_sizes_and_a_profile(tmp_path):
    out = tmp_path / "scale.json"
    completed = subprocess.run(
        [sys.executable, "-m", "bench.scale", "--smoke", f"--output={out}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=230,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    assert "msgs/s/core" in completed.stdout and "top functions" in completed.stdout
    assert (tmp_path / "scale.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # the docs' figure
    results = json.loads(out.read_text())
    assert [
        (f["trains"], f["mode"], f["workers"], f["per_bundle"], f["state_cache_mb"]) for f in results["fleets"]
    ] == [(3, "multi_threading", 4, 20, 0), (10, "in_memory", 1, 0, 100)]
    for fleet in results["fleets"]:
        assert fleet["counts_exact"] is True and fleet["count_errors"] == 0, fleet
        assert fleet["messages"] > 0 and fleet["msgs_per_s_per_core"] > 0 and fleet["peak_rss_mb"] > 0
        assert fleet["flushes"] > 0 and fleet["realtime_writes"] > 0 and fleet["history_writes"] > 0
        assert fleet["realtime_write_conflicts"] == 0 and fleet["registry_loads"] == 1, fleet
    # State over the Fn API in bundles of 20, every request counted: the job's per element and per
    # flush within the goals (at most 2 and 8); the pass-through's counted too (one read
    # per key and bundle: the SDK keeps what a bundle read).
    fn_api = results["fleets"][0]
    job, passthrough = fn_api["state_requests"], fn_api["passthrough_state_requests"]
    assert job["elements"] > 0 and job["flushes"] >= fn_api["flushes"] > 0, job
    assert job["requests_per_element"] <= 2 and job["requests_per_flush"] <= 8, job
    assert job["gets_per_element"] <= 2 and passthrough["gets_per_element"] > 0, passthrough
    # State per train does not grow with time: the same after 5 minutes and at the end.
    for doors, sizes in results["state"].items():
        five, end = sizes["5 min"], sizes["end"]
        assert end["messages"] > five["messages"] > 0
        assert end["train_state_bytes"] <= 1.1 * five["train_state_bytes"], doors
        assert end["queued_events"] < 100 and end["realtime_doc_bytes"] <= 1.05 * five["realtime_doc_bytes"]
    assert results["state"]["200"]["end"]["realtime_doc_bytes"] > results["state"]["10"]["end"]["realtime_doc_bytes"]
    document = results["document"]
    assert document["worst_doc_bytes_at_max_devices"] < 1_048_576
    assert document["devices_at_1_mib_worst"] > document["max_devices_per_train"]
    top = results["profile"]["top"]
    assert len(top) == 10 and {row["owner"] for row in top} <= {
        "ours",
        "Beam",
        "Beam (state cache: objsize)",
        "Firestore client",
        "other",
    }


def test_the_forecast_jobs_throughput_is_measured_on_what_it_read_and_wrote():
    from bench import forecast_job
    from occupancy.forecast import history
    from occupancy.schedule import Schedule
    from sim import ridership

    scenario = ridership.Scenario(weeks=3, stops=4, vehicles=4)
    job = forecast_job.measure(scenario, forecast_days=2)
    simulated = ridership.simulate(scenario)
    assert job["stop_visits_read"] == len(simulated.stop_visits)
    start = scenario.start + datetime.timedelta(weeks=3)
    assert job["forecast_rows_written"] == len(history.slots(Schedule(ridership.gtfs_files(scenario)), start, 2))
    assert job["cpu_s"] > 0 and job["visits_per_cpu_s"] > 0
