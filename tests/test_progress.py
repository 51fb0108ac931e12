"""local.progress: the time left of a long run, scaled by its pace so far."""

from local.progress import Steps


def test_the_estimate_follows_the_runs_pace():
    now = [0.0]
    lines = []
    steps = Steps(
        "bench",
        [("a", 10), ("b", 20), ("c", 30)],
        clock=lambda: now[0],
        log=lambda fmt, *args: lines.append(fmt % args),
    )
    steps.step("a")
    assert steps.left_s() == 60  # nothing measured yet: as expected
    now[0] = 20.0  # "a" took twice what it was expected to
    steps.step("b")
    assert steps.left_s() == 100  # 2 x (20 + 30)
    now[0] = 50.0
    steps.step("c")
    assert steps.left_s() == 50 / 30 * 30
    steps.finished()
    assert lines == [
        "[bench] 1/3 a; 0s so far, about 1m00s left",
        "[bench] 2/3 b; 20s so far, about 1m40s left",
        "[bench] 3/3 c; 50s so far, about 50s left",
        "[bench] done in 50s",
    ]
