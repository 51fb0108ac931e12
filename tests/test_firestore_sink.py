"""Writes to the real Firestore emulator: batching, idempotence, transient retry, permanent dead letters."""

import base64
import threading
import time

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to
from google.api_core import exceptions as gexc

from adapters.store import RetryPolicy, commit_documents, make_client
from local.stack import PROJECT
from occupancy import dead_letters, documents, wire
from transforms.firestore_sink import WriteToFirestore

COLLECTIONS = {documents.REALTIME: "rt", documents.HISTORY: "hist"}


def test_commit_writes_more_than_one_batch_and_a_retry_replaces(firestore_client):
    writes = [("hist", f"doc{i:04d}", {"i": i}) for i in range(1234)]
    assert commit_documents(firestore_client, writes, RetryPolicy()) == []
    assert commit_documents(firestore_client, writes[:10], RetryPolicy()) == []  # a retried batch
    docs = {d.id: d.to_dict()["i"] for d in firestore_client.collection("hist").stream()}
    assert len(docs) == 1234 and docs["doc1233"] == 1233


def test_a_commit_of_large_documents_is_split_below_the_request_size_limit(firestore_client):
    """Ten dead letters of half a megabyte in one bundle: one commit would exceed the emulator's
    4 MiB request limit (Firestore's is 10 MiB), fail with ResourceExhausted, which looks
    transient, and be retried until the bundle failed (seen: 10 hostile messages lost)."""
    writes = [("dl", f"d{i}", {"payload": "a" * 520_000}) for i in range(10)]
    assert commit_documents(firestore_client, writes, RetryPolicy(deadline_s=5)) == []
    assert len(list(firestore_client.collection("dl").stream())) == 10


def test_a_permanent_error_fails_only_its_document(firestore_client):
    writes = [("hist", "good1", {"v": 1}), ("hist", "__reserved__", {"v": 2}), ("hist", "good2", {"v": 3})]
    retries = []
    failed = commit_documents(firestore_client, writes, RetryPolicy(), retries.append)
    assert [w[1] for w, _ in failed] == ["__reserved__"]
    assert isinstance(failed[0][1], gexc.InvalidArgument)
    assert retries == []  # permanent errors are not retried
    assert sorted(d.id for d in firestore_client.collection("hist").stream()) == ["good1", "good2"]


def test_transient_errors_are_retried_until_firestore_is_back(own_emulator):
    own_firestore = own_emulator("firestore")
    client = make_client(PROJECT)
    own_firestore.stop()
    restarter = threading.Timer(3.0, own_firestore.start)
    restarter.start()
    retries = []
    started = time.monotonic()
    failed = commit_documents(
        client,
        [("rt", "t1", {"current_value": 5})],
        RetryPolicy(initial_s=0.2, max_backoff_s=1.0, deadline_s=60),
        retries.append,
    )
    restarter.join()
    assert failed == [] and len(retries) >= 2 and time.monotonic() - started >= 2.5
    assert all(isinstance(e, gexc.ServiceUnavailable) for e in retries)
    assert client.collection("rt").document("t1").get().to_dict() == {"current_value": 5}


def test_transient_errors_raise_after_the_deadline_instead_of_dead_lettering(own_emulator):
    own_firestore = own_emulator("firestore")
    client = make_client(PROJECT)
    own_firestore.stop()
    with pytest.raises(gexc.ServiceUnavailable):
        commit_documents(client, [("rt", "t1", {"v": 1})], RetryPolicy(initial_s=0.1, deadline_s=1.5))


def test_write_transform_coalesces_stamps_realtime_and_dead_letters_permanent_failures(firestore_client):
    t = wire.parse_time("2026-11-24T07:00:00Z")
    writes = [
        documents.DocumentWrite(documents.REALTIME, "t1", {"current_value": 1}),
        documents.DocumentWrite(documents.HISTORY, "h1", {"value": 1, "timestamp": wire.from_micros(t)}),
        documents.DocumentWrite(documents.REALTIME, "t1", {"current_value": 2}),  # replaces the first
        documents.DocumentWrite(documents.HISTORY, "__bad__", {"value": 9}),
    ]
    with TestPipeline(runner="BundleBasedDirectRunner") as p:
        dead = (
            p
            | beam.Create(writes)
            | WriteToFirestore(PROJECT, "(default)", COLLECTIONS)
            | beam.Map(lambda d: (d["reason"], d["step"], d["detail"].split(":")[0]))
        )
        assert_that(dead, equal_to([(wire.WRITE_FAILED, "WriteToFirestore", "InvalidArgument")]))
    realtime = firestore_client.collection("rt").document("t1").get().to_dict()
    assert realtime["current_value"] == 2 and realtime["updated_at"] is not None
    assert firestore_client.collection("hist").document("h1").get().to_dict()["value"] == 1


def test_dead_letters_are_stored_and_an_oversized_payload_is_cut_not_lost(firestore_client):
    from transforms.dead_letters import WriteDeadLetters

    now = wire.parse_time("2026-11-24T07:00:00Z")
    small = dead_letters.record(wire.MALFORMED, "bad", b"x", {"a": "1"}, "m1", now, "ParseEvents")
    huge = dead_letters.record(wire.MALFORMED, "bad", b"\x00" * 2_000_000, {}, "m2", now, "ParseEvents")
    with TestPipeline(runner="BundleBasedDirectRunner") as p:
        _ = p | beam.Create([small, huge]) | WriteDeadLetters(None, PROJECT, "(default)", "dl")
    stored = {d.to_dict()["message_id"]: d.to_dict() for d in firestore_client.collection("dl").stream()}
    assert stored["m1"]["payload"] == small["payload"] and "payload_truncated" not in stored["m1"]
    # Cut where the record is made (occupancy.dead_letters.record), so that it fits the topic's sink as well.
    assert stored["m2"]["payload_truncated"] is True and stored["m2"]["payload_bytes"] == 2_000_000
    assert base64.b64decode(stored["m2"]["payload"]) == b"\x00" * dead_letters.PAYLOAD_BYTES


def test_a_newer_job_fences_an_older_one_off_the_trains_it_writes(firestore_client):
    """Two jobs write the same train (a second job started while the first still runs): from the
    newer job's first write on, the older one's realtime and history writes of it are dropped."""
    from transforms.firestore_sink import WriteDocuments

    def job(epoch):
        fn = WriteDocuments(PROJECT, "(default)", COLLECTIONS, writer_epoch_us=epoch)
        fn.setup()
        return fn

    def flush(fn, value, bucket, train="t1"):
        fn.start_bundle()
        for write in (
            documents.DocumentWrite(documents.REALTIME, train, {"current_value": value}),
            documents.DocumentWrite(documents.HISTORY, bucket, {"train": train, "value": value}),
        ):
            assert list(fn.process(write)) == []
        assert list(fn.finish_bundle()) == []  # never a dead letter

    def realtime(train="t1"):
        doc = firestore_client.collection("rt").document(train).get().to_dict()
        return doc["current_value"], doc["writer_epoch"]

    def history():
        return sorted(d.id for d in firestore_client.collection("hist").stream())

    old, new = job(100), job(200)
    flush(old, 1, "h1")
    flush(old, 2, "h2", train="t2")
    assert realtime() == (1, 100)
    flush(new, 5, "h3")  # reads t1 once (an older job's), then overwrites it
    assert realtime() == (5, 200)
    flush(old, 3, "h4")  # its version of t1 is stale: read again, newer epoch: fenced off t1
    flush(old, 4, "h5")
    assert realtime() == (5, 200) and history() == ["h1", "h2", "h3"]
    flush(old, 6, "h6", train="t2")  # a train the newer job has not written: still the old job's
    assert realtime("t2") == (6, 100)
    flush(new, 7, "h7")  # the newer job writes on with the version it knows
    assert realtime() == (7, 200)
    new.start_bundle()  # a guarded write replaces the document: no field of an earlier one stays
    list(
        new.process(
            documents.DocumentWrite(
                documents.REALTIME, "t1", {"current_value": 7, "capacity": 300, "occupancy_ratio": 0.0233}
            )
        )
    )
    list(new.finish_bundle())
    assert firestore_client.collection("rt").document("t1").get().to_dict()["capacity"] == 300
    flush(new, 7, "h7")
    assert "capacity" not in firestore_client.collection("rt").document("t1").get().to_dict()
    late_starter = job(150)  # an older job that starts writing only now is fenced at its first read
    flush(late_starter, 8, "h8")
    newest = job(300)
    flush(newest, 9, "h9")
    flush(new, 10, "h10")
    assert realtime() == (9, 300) and history() == ["h1", "h2", "h3", "h6", "h7", "h9"]


def test_conflicts_that_never_end_become_dead_letters_after_bounded_rounds(firestore_client, monkeypatch):
    """A realtime document that changes under every round (another writer that never stops) is
    given up after CONFLICT_ROUNDS as a `write_failed` dead letter, not raised: a streaming
    runner would retry the bundle for ever."""
    from adapters.store import WriteConflict
    from transforms.firestore_sink import WriteDocuments

    fn = WriteDocuments(PROJECT, "(default)", COLLECTIONS, writer_epoch_us=100)
    fn.setup()
    rounds = []

    def always_conflicting(writes):
        if not writes:  # the round of the other collections' writes
            return []
        rounds.append(len(writes))
        raise WriteConflict(fn._prepared(writes))

    monkeypatch.setattr(fn, "_commit_round", always_conflicting)
    fn.start_bundle()
    assert list(fn.process(documents.DocumentWrite(documents.REALTIME, "t1", {"current_value": 1}))) == []
    dead = [d.value.value for d in fn.finish_bundle()]  # TaggedOutput(WindowedValue(record))
    assert len(rounds) == WriteDocuments.CONFLICT_ROUNDS
    assert [(d["reason"], d["step"]) for d in dead] == [(wire.WRITE_FAILED, "WriteToFirestore")]
    assert "WriteConflict" in dead[0]["detail"]


def test_a_trains_realtime_and_history_of_one_flush_are_one_commit(firestore_client, monkeypatch):
    """A job that dies between two commits (SIGKILLed, a worker lost) must not leave `realtime`
    saying a count was applied while its `history` bucket lacks it: a job that starts then seeds
    from both and never writes that bucket's count again (the fault suite's pipeline_kills found
    it: realtime exact, one event short in history). So a train's realtime document and the
    history and trip documents of the same flush go in one commit."""
    from adapters import store
    from transforms.firestore_sink import WriteDocuments

    fn = WriteDocuments(PROJECT, "(default)", COLLECTIONS, writer_epoch_us=100)
    fn.setup()
    commits, real_commit = [], store._commit

    class Died(BaseException):  # nothing in the sink may catch it, as nothing runs after a SIGKILL
        pass

    def dies_at_the_second(client, writes, on_committed):
        commits.append([w[1] for w in writes])
        if len(commits) == 2:
            raise Died()
        real_commit(client, writes, on_committed)

    monkeypatch.setattr(store, "_commit", dies_at_the_second)
    fn.start_bundle()
    for write in (
        documents.DocumentWrite(documents.REALTIME, "t1", {"current_value": 3}),
        documents.DocumentWrite(documents.HISTORY, "t1-b1", {"train": "t1", "value": 3, "events": 2}),
        documents.DocumentWrite(documents.REALTIME, "t2", {"current_value": 1}),
        documents.DocumentWrite(documents.HISTORY, "t2-b1", {"train": "t2", "value": 1, "events": 1}),
        documents.DocumentWrite(documents.HISTORY, "t3-b1", {"train": "t3", "value": 5, "events": 1}),
    ):
        assert list(fn.process(write)) == []
    try:
        list(fn.finish_bundle())
    except Died:
        pass
    for train in ("t1", "t2"):
        written = (
            firestore_client.collection("rt").document(train).get().exists,
            firestore_client.collection("hist").document(f"{train}-b1").get().exists,
        )
        assert written in ((True, True), (False, False)), (train, written, commits)
    assert {"t1", "t1-b1", "t2", "t2-b1"} <= set(commits[0])  # the trains' writes together


def test_a_conflicting_trains_history_waits_for_its_realtime_and_both_are_written(firestore_client, monkeypatch):
    """Realtime changed under the job (another writer): the train's whole flush is held back,
    the document read again, and realtime and history are then written together."""
    from adapters import store
    from transforms.firestore_sink import WriteDocuments

    fn = WriteDocuments(PROJECT, "(default)", COLLECTIONS, writer_epoch_us=100)
    fn.setup()

    def flush(value, bucket):
        fn.start_bundle()
        for write in (
            documents.DocumentWrite(documents.REALTIME, "t1", {"current_value": value}),
            documents.DocumentWrite(documents.HISTORY, bucket, {"train": "t1", "value": value}),
        ):
            assert list(fn.process(write)) == []
        return list(fn.finish_bundle())

    assert flush(1, "h1") == []
    firestore_client.collection("rt").document("t1").update({"note": "changed by someone else"})
    commits, real_commit = [], store._commit

    def recording(client, writes, on_committed):
        commits.append(sorted(w[1] for w in writes))
        real_commit(client, writes, on_committed)

    monkeypatch.setattr(store, "_commit", recording)
    assert flush(2, "h2") == []
    assert commits[0] == commits[-1] == ["h2", "t1"]  # refused whole, then committed whole
    assert firestore_client.collection("rt").document("t1").get().to_dict()["current_value"] == 2
    assert firestore_client.collection("hist").document("h2").get().to_dict()["value"] == 2


def test_a_permanent_failure_beside_a_conflict_is_still_a_dead_letter(firestore_client):
    """One train's realtime conflicts while another train's history document fails for good in
    the same commit: the conflicting train is tried again, and the failed document is a dead
    letter, not dropped with the round that raised the conflict."""
    from transforms.firestore_sink import WriteDocuments

    fn = WriteDocuments(PROJECT, "(default)", COLLECTIONS, writer_epoch_us=100)
    fn.setup()

    def flush(*writes):
        fn.start_bundle()
        for write in writes:
            assert list(fn.process(write)) == []
        return [d.value.value for d in fn.finish_bundle()]  # TaggedOutput(WindowedValue(record))

    assert flush(documents.DocumentWrite(documents.REALTIME, "t1", {"current_value": 1})) == []
    firestore_client.collection("rt").document("t1").update({"note": "changed by someone else"})
    dead = flush(
        documents.DocumentWrite(documents.REALTIME, "t1", {"current_value": 2}),
        documents.DocumentWrite(documents.HISTORY, "h1", {"train": "t1", "value": 2}),
        documents.DocumentWrite(documents.REALTIME, "t2", {"current_value": 7}),
        documents.DocumentWrite(documents.HISTORY, "__bad__", {"train": "t2", "value": 7}),
    )
    assert [(d["reason"], d["detail"].split(":")[0]) for d in dead] == [(wire.WRITE_FAILED, "InvalidArgument")]
    assert firestore_client.collection("rt").document("t1").get().to_dict()["current_value"] == 2
    assert firestore_client.collection("hist").document("h1").get().to_dict()["value"] == 2
    assert firestore_client.collection("rt").document("t2").get().to_dict()["current_value"] == 7
