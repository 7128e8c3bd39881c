"""Work on a worker thread: results, errors, and a worker left behind in a call that hangs."""

from __future__ import annotations

import threading

import pytest

from coldvault.errors import Cancelled
from coldvault.system import beside
from coldvault.system.beside import Guard, run_beside
from coldvault.system.cancel import CancelToken


def test_the_result_and_the_error_of_the_work_reach_the_caller() -> None:
    guard = Guard()
    assert run_beside(lambda: guard.call(sum, [1, 2, 3]), CancelToken(), guard, "t") == 6

    def fail() -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        run_beside(fail, CancelToken(), Guard(), "t")
    assert not guard.abandoned


def test_a_stop_is_left_to_the_work_while_it_is_not_stuck() -> None:
    """The work sees the stop at its own safe point and ends as it chooses."""
    cancel, guard = CancelToken(), Guard()
    steps: list[int] = []

    def work() -> str:
        for i in range(1000):
            if cancel.cancelled:
                return f"stopped after {len(steps)}"
            steps.append(guard.call(int, i))
            if i == 3:
                cancel.cancel()
        return "ran to the end"

    assert run_beside(work, cancel, guard, "t") == "stopped after 4"
    assert not guard.abandoned


def test_a_call_that_never_returns_is_left_behind_after_a_stop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(beside, "HANG_SECONDS", 0.2)
    cancel, guard = CancelToken(), Guard()
    inside, release, after = threading.Event(), threading.Event(), threading.Event()
    ended = threading.Event()

    def hung_read() -> None:
        inside.set()
        release.wait()  # like a read from a server that never answers

    def work() -> None:
        try:
            guard.call(hung_read)
            after.set()  # must never run: the caller may have closed our files
        finally:
            ended.set()

    threading.Timer(0.1, cancel.cancel).start()
    with pytest.raises(Cancelled):
        run_beside(work, cancel, guard, "t")
    assert inside.is_set() and guard.abandoned
    release.set()  # the read returns at last
    assert ended.wait(10)
    assert not after.is_set()
