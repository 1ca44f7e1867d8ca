from __future__ import annotations

from aovs.agent.reports import ReportBatch, ReportQueue
from aovs.agent.schedule import RetrySchedule


def test_reboot_reports_down_before_up_in_separate_calls() -> None:
    queue = ReportQueue()
    queue.up("a")
    queue.down("p")
    queue.up("p")
    assert queue.take() == [ReportBatch(down=("p",)), ReportBatch(up=("a", "p"))]


def test_newer_down_supersedes_queued_up() -> None:
    queue = ReportQueue()
    queue.up("p")
    queue.down("p")
    assert queue.take() == [ReportBatch(down=("p",))]


def test_failed_batch_is_given_back_unless_superseded() -> None:
    queue = ReportQueue()
    queue.up("p")
    queue.up("q")
    (batch,) = queue.take()
    queue.down("q")
    queue.give_back(batch)
    assert queue.take() == [ReportBatch(down=("q",)), ReportBatch(up=("p",))]


def test_take_splits_by_limit() -> None:
    queue = ReportQueue()
    for device in "abcde":
        queue.up(device)
    assert [len(b.up) for b in queue.take(limit=2)] == [2, 2, 1]


def test_retry_backs_off_and_caps() -> None:
    schedule = RetrySchedule(first_delay=1.0, cap=3.0)
    schedule.want(["k"], 0.0)
    assert schedule.take_due(0.0) == ["k"]
    assert schedule.failed(["k"], 0.0) == 1.0
    assert schedule.take_due(0.5) == []
    assert schedule.take_due(1.0) == ["k"]
    assert schedule.failed(["k"], 1.0) == 2.0
    schedule.take_due(3.0)
    assert schedule.failed(["k"], 3.0) == 3.0


def test_wanted_while_in_flight_is_asked_again() -> None:
    schedule = RetrySchedule()
    schedule.want(["k"], 0.0)
    schedule.take_due(0.0)
    schedule.want(["k"], 0.1)
    assert schedule.take_due(0.1) == []
    schedule.done(["k"], 0.2)
    assert schedule.take_due(0.2) == ["k"]
