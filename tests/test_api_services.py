"""What the API's routers share is one typed `Services` (api/services.py), and what is built once
per fleet view is built again only when the view changes (api/caches.py PerView)."""

import datetime

from adapters.fleet_cache import FleetCache
from api.app import create_app
from api.caches import PerView
from api.services import Services
from api.settings import Settings


def test_the_app_holds_one_typed_services_object_and_nothing_else():
    app = create_app(Settings(project="p"), client=object())
    assert list(app.state._state) == ["services"]
    services = app.state.services
    assert isinstance(services, Services)
    assert services.settings.project == "p" and isinstance(services.fleet_cache, FleetCache)
    assert services.fleet_listener is None and services.schedule is None


def test_a_value_per_view_is_built_once_per_view_key_and_time():
    built, memo = [], PerView()
    at = datetime.datetime(2026, 12, 7, 12, tzinfo=datetime.timezone.utc)
    views = ["t1", "t2"]

    def build(label):
        return lambda: built.append(label) or f"{label}#{len(built)}"

    assert memo.get(True, (views,), at, build("exact")) == "exact#1"
    assert memo.get(True, (views,), at, build("exact")) == "exact#1"  # the same view: not built again
    assert memo.get(False, (views,), at, build("public")) == "public#2"  # another key: its own value
    assert memo.get(True, (list(views),), at, build("exact")) == "exact#3"  # an equal list, another read
    assert memo.get(True, (list(views),), at, build("exact")) != "exact#3"  # that list was not kept
    same = memo.get(True, (views,), at + datetime.timedelta(seconds=1), build("exact"))
    assert same == f"exact#{len(built)}" and built.count("exact") == 4  # a later time: built again


def test_concurrent_readers_of_a_new_view_wait_for_one_build():
    """At each view change every poller built the value itself (20 concurrent readers, 20 builds
    of the feed, each a batched read of the forecasts); a build that fails fails its waiters and
    is tried again by the next reader."""
    import threading
    import time

    memo, builds, views = PerView(), [], ["t1"]
    at = datetime.datetime(2026, 12, 7, 12, tzinfo=datetime.timezone.utc)
    start = threading.Barrier(20)

    def build():
        builds.append(1)
        time.sleep(0.2)
        return "feed"

    def read(out):
        start.wait()
        out.append(memo.get("exact", (views,), at, build))

    answers = []
    threads = [threading.Thread(target=read, args=(answers,)) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == ["feed"] * 20 and len(builds) == 1

    def failing():
        raise RuntimeError("Firestore said no")

    later = at + datetime.timedelta(seconds=1)
    try:
        memo.get("exact", (views,), later, failing)
    except RuntimeError:
        pass
    assert memo.get("exact", (views,), later, build) == "feed" and len(builds) == 2
