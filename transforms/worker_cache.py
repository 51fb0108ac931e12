"""Objects a worker process keeps once for all its DoFn instances, for as long as it runs.

A worker runs many bundle processors (DoFn instances) at once, and runners
create and discard instances freely (the local runner makes a new one for
every bundle). What must outlive an instance and be the same for all of them
is kept here: the registry view (transforms/enrich.py) and the writer fence
(transforms/firestore_sink.py).

Why not `apache_beam.utils.shared.Shared`: it keeps only the most recently
acquired object alive between instances. With two tokens in one job (the
registry view and the fence) each displaced the other, the registry view was
garbage-collected between bundles and rebuilt from the job's first snapshot,
so a device moved while the job ran kept counting for its old train (seen on
the local runner: tests/test_api.py, a device moved through the API). Here the
objects live until the process ends; each is small (one view of the registry,
one fence of at most a train's update time per train).
"""

import threading
from typing import Any, Callable, Dict

_lock = threading.Lock()
_objects: Dict[str, Any] = {}


def get(key: str, factory: Callable[[], Any]) -> Any:
    """The object kept under `key`, made by `factory` (once per process, under a lock) if new.

    `key` must be unique per job and purpose: make it when the pipeline is built (a
    uuid in the DoFn's constructor), so that it travels pickled with the DoFn.
    """
    with _lock:
        if key not in _objects:
            _objects[key] = factory()
        return _objects[key]
