"""A page of a train's public history (docs/design.md, "Privacy"): one coarse sample per hold that
ended, at its end, of the value standing then (occupancy.privacy.public_history), read at a
bounded cost whatever the holds hold.

The buckets are read in time order, CHUNK at a time. A chunk that ends inside a hold (the one
its last bucket is placed in, occupancy.privacy.placed_in_holds) is not read on to the hold's
end: what the sample needs of the rest is the hold's last bucket, one more read (`timestamp`
descending, the train + timestamp DESC index), and the next chunk starts at the hold's end.
So a chunk costs at most CHUNK + 1 reads and ends at least one hold, and a page stops once it
holds `limit` samples or has read READ_BUDGET buckets; its cursor is then its last sample's
time, where the next page goes on.
"""

import datetime
from typing import Callable, List, Optional, Tuple

from adapters.store import count_ops
from occupancy import fleet, privacy

CHUNK = 100
READ_BUDGET = 1000

Bucket = Tuple[datetime.datetime, int, str]  # (timestamp, value, document id)


def read_samples(
    query,
    timeout_s: float,
    limit: int,
    hold_at: Callable[[datetime.datetime], privacy.Hold],
    capacity: Optional[int],
    policy: privacy.Policy,
    now: datetime.datetime,
) -> Tuple[List[privacy.PublicSample], bool]:
    """(up to `limit` samples of the train's history in `query`'s range, whether there are
    more). `query`: the train's history buckets in the page's range, not yet ordered."""
    from google.cloud.firestore_v1 import Query
    from google.cloud.firestore_v1.base_query import FieldFilter

    ascending = query.order_by("timestamp").order_by("__name__")
    buckets: List[Bucket] = []
    read, start, exhausted, samples = 0, None, False, []
    while read < READ_BUDGET:
        chunk = ascending if start is None else ascending.where(filter=FieldFilter("timestamp", ">=", start))
        docs = list(chunk.limit(CHUNK).stream(timeout=timeout_s))
        read += max(1, len(docs))
        buckets += [_bucket(doc) for doc in docs]
        if len(docs) < CHUNK:
            exhausted = True
            break
        hold = _last_hold(buckets, hold_at)
        last = (
            query.where(filter=FieldFilter("timestamp", "<", hold.end))
            .order_by("timestamp", direction=Query.DESCENDING)
            .order_by("__name__", direction=Query.DESCENDING)
            .limit(1)
        )
        tail = [_bucket(doc) for doc in last.stream(timeout=timeout_s)]
        read += 1
        if tail and tail[0][2] != buckets[-1][2]:
            buckets.append(tail[0])
        if hold.end > now:  # no later hold has ended either
            exhausted = True
            break
        start = hold.end
        samples = privacy.public_history(((t, v) for t, v, _ in buckets), hold_at, capacity, policy, now)
        if len(samples) > limit:
            break
    count_ops(reads=read)
    if exhausted:
        samples = privacy.public_history(((t, v) for t, v, _ in buckets), hold_at, capacity, policy, now)
    return samples[:limit], len(samples) > limit or not exhausted


def _last_hold(buckets: List[Bucket], hold_at) -> privacy.Hold:
    """The hold the last of `buckets` is placed in, as public_history places it (holds may
    overlap: not always hold_at's of that bucket alone)."""
    *_, (hold, _) = privacy.placed_in_holds(((t, v) for t, v, _ in buckets), hold_at)
    return hold


def _bucket(doc) -> Bucket:
    data = doc.to_dict()
    return fleet.as_utc(data["timestamp"]), int(data.get("value") or 0), doc.id
