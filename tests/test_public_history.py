"""api/public_history.py against the Firestore emulator: a public history page read in chunks
within a read budget gives the samples occupancy.privacy.public_history makes of every bucket at
once, each bucket in the hold it lies in (the API's pages and their cost: tests/test_privacy.py)."""

import datetime

from occupancy import privacy

UTC = datetime.timezone.utc


def test_pages_read_within_their_budget_give_together_the_samples_of_every_bucket(firestore_client, monkeypatch):
    """api.public_history with a chunk of 3 buckets and a budget of 10 reads: 40 holds of a
    minute, 0 to 7 buckets each; the pages, each asked from its cursor's hold on as the API asks,
    give the samples occupancy.privacy.public_history makes of all the buckets at once."""
    import random

    from google.cloud.firestore_v1.base_query import FieldFilter

    from api import public_history

    monkeypatch.setattr(public_history, "CHUNK", 3)
    monkeypatch.setattr(public_history, "READ_BUDGET", 10)
    policy = privacy.Policy(seed=b"s" * 16, window_s=60)
    start = datetime.datetime(2026, 12, 1, 8, tzinfo=UTC)
    rng, buckets = random.Random(4), []
    for hold in range(40):
        seconds = sorted(rng.sample(range(60), rng.choice((0, 1, 2, 3, 5, 7))))
        buckets += [(start + datetime.timedelta(seconds=60 * hold + s), rng.randrange(300)) for s in seconds]
    for n, (moment, value) in enumerate(buckets):
        firestore_client.collection("history").document(f"b{n:03d}").set(
            {"train": "t5", "timestamp": moment, "value": value}
        )

    def hold_at(at):
        return privacy.hold_of(at, policy)

    now = start + datetime.timedelta(hours=1)
    expected = privacy.public_history(buckets, hold_at, 300, policy, now)
    walked, since, pages = [], None, 0
    while pages < 100:
        query = firestore_client.collection("history").where(filter=FieldFilter("train", "==", "t5"))
        if since is not None:
            query = query.where(filter=FieldFilter("timestamp", ">=", since))
        page, more = public_history.read_samples(query, 30, 6, hold_at, 300, policy, now)
        walked, pages = walked + page, pages + 1
        if not more:
            break
        since = hold_at(page[-1].at).start  # the cursor: the last sample's time, widened to its hold
    assert walked == expected and len(expected) > 20 and pages > len(expected) / 6, pages


def test_a_page_read_in_chunks_places_buckets_in_the_hold_they_lie_in_when_holds_overlap(firestore_client, monkeypatch):
    """A run's last departure holds until 09:54 while the next run's windows (it starts at 10:00)
    begin at 09:50: a bucket of 09:53:50 lies in the departure's hold, as public_history places
    it, and its value stands at 09:54, however the chunks of the read fall."""
    from google.cloud.firestore_v1.base_query import FieldFilter

    from api import public_history

    monkeypatch.setattr(public_history, "CHUNK", 3)
    policy = privacy.Policy(seed=b"s" * 16, window_s=300)
    at = datetime.datetime(2026, 12, 1, 9, 49, tzinfo=UTC)
    last_departure = privacy.Hold("B/last", at, at + datetime.timedelta(minutes=5))

    def hold_at(moment):  # run B's last departure until 09:53, then run C, windows of 5 minutes
        if at <= moment < at + datetime.timedelta(minutes=4):
            return last_departure
        return privacy.hold_of(moment, policy)

    offsets = (10, 60, 240, 290, 320, 350, 420, 700)  # seconds after 09:49
    buckets = [(at + datetime.timedelta(seconds=s), 30 * (k + 1)) for k, s in enumerate(offsets)]
    for n, (moment, value) in enumerate(buckets):
        firestore_client.collection("history").document(f"o{n}").set(
            {"train": "t6", "timestamp": moment, "value": value}
        )
    now = at + datetime.timedelta(hours=1)
    query = firestore_client.collection("history").where(filter=FieldFilter("train", "==", "t6"))
    page, more = public_history.read_samples(query, 30, 10, hold_at, 300, policy, now)
    expected = privacy.public_history(buckets, hold_at, 300, policy, now)
    assert (page, more) == (expected, False)
    assert (page[0].hold.key, page[0].at, page[0].value) == ("B/last", at + datetime.timedelta(minutes=5), 120)
