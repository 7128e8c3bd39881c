"""The daemon's policy, one rule at a time, with both clocks in the test's hands."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from coldvault.config.model import ImageJob, SourceRef, When
from coldvault.errors import Busy, ColdvaultError, DiskAbsent, TokenRejected
from coldvault.service import policy
from coldvault.service import state as st
from coldvault.service.policy import DiskWatch

TZ = timezone(timedelta(hours=1))
NOW = datetime(2026, 11, 10, 12, 0, tzinfo=TZ)
DAY = timedelta(days=1)


EVERY_DAY = When(every=DAY)


def job(name: str, when: When = EVERY_DAY) -> ImageJob:
    return ImageJob(name=name, source=SourceRef("path", "/dev/null"), target=name, when=when)


DAILY = job("daily")
PLUG = job("plug", When(on_plug=True))
HOURLY = job("hourly", When(every=timedelta(hours=1)))


def states(table: dict[tuple[str, str], st.JobState]) -> policy.StateOf:
    return lambda j, d: table.get((j, d), st.JobState())


def ok(ago: timedelta) -> st.JobState:
    return st.JobState(last_attempt=NOW - ago, last_success=NOW - ago, result=st.SUCCESS)


def failed(ago: timedelta, success_ago: timedelta | None = None) -> st.JobState:
    last = NOW - success_ago if success_ago is not None else None
    return st.JobState(last_attempt=NOW - ago, last_success=last, result=st.FAILED)


def present(name: str, *jobs: ImageJob, **kw: object) -> DiskWatch:
    return DiskWatch(name, jobs, present=True, **kw)  # type: ignore[arg-type]


# -- observe ---------------------------------------------------------------------------


def test_first_look_is_not_a_plug() -> None:
    seen = policy.observe(DiskWatch("a", ()), True)
    assert seen.watch.present and not seen.watch.plugged and not seen.appeared


def test_appearing_after_absence_is_a_plug() -> None:
    seen = policy.observe(DiskWatch("a", (), present=False), True)
    assert seen.appeared and seen.watch.plugged and not seen.went_away


def test_going_away_clears_rejection_and_hold() -> None:
    watch = DiskWatch("a", (), present=True, rejected=True, hold_until=99.0)
    seen = policy.observe(watch, False)
    assert seen.went_away and not seen.watch.rejected and seen.watch.hold_until == 0.0


def test_staying_present_keeps_the_hold() -> None:
    watch = DiskWatch("a", (), present=True, rejected=True, hold_until=99.0)
    seen = policy.observe(watch, True)
    assert seen.watch.rejected and seen.watch.hold_until == 99.0 and not seen.appeared


# -- what is due on a disk ---------------------------------------------------------------


def test_due_is_per_disk() -> None:
    table = {("daily", "home"): ok(timedelta(hours=2)), ("daily", "office"): ok(2 * DAY)}
    home = present("home", DAILY)
    office = present("office", DAILY)
    assert policy.due_on(home, states(table), NOW) == ()
    assert policy.due_on(office, states(table), NOW) == (DAILY,)


def test_on_plug_runs_only_when_plugged() -> None:
    table = {("plug", "a"): ok(DAY)}
    assert policy.due_on(present("a", PLUG), states(table), NOW) == ()
    assert policy.due_on(present("a", PLUG, plugged=True), states(table), NOW) == (PLUG,)


def test_failed_job_waits_before_its_retry() -> None:
    table = {("hourly", "a"): failed(timedelta(minutes=3), timedelta(hours=5))}
    assert policy.due_on(present("a", HOURLY), states(table), NOW) == ()
    later = {("hourly", "a"): failed(timedelta(minutes=11), timedelta(hours=5))}
    assert policy.due_on(present("a", HOURLY), states(later), NOW) == (HOURLY,)


def test_replug_retries_a_failed_job_at_once() -> None:
    table = {("hourly", "a"): failed(timedelta(minutes=3), timedelta(hours=5))}
    watch = present("a", HOURLY, plugged=True)
    assert policy.due_on(watch, states(table), NOW) == (HOURLY,)


def test_failure_on_one_disk_does_not_hold_the_other() -> None:
    table = {
        ("hourly", "a"): failed(timedelta(minutes=3), timedelta(hours=5)),
        ("hourly", "b"): ok(timedelta(hours=5)),
    }
    assert policy.due_on(present("b", HOURLY), states(table), NOW) == (HOURLY,)


# -- plan ------------------------------------------------------------------------------


def test_plan_starts_the_first_present_disk_with_due_jobs() -> None:
    table = {("daily", "a"): ok(timedelta(hours=1))}
    watches = [present("a", DAILY), present("b", DAILY), present("c", DAILY)]
    decided = policy.plan(watches, states(table), NOW, mono=0.0)
    assert decided.disk == "b" and decided.jobs == (DAILY,)


def test_plan_reports_due_jobs_of_absent_disks_once() -> None:
    absent = DiskWatch("a", (DAILY, HOURLY), present=False)
    decided = policy.plan([absent], states({}), NOW, mono=0.0)
    assert decided.disk is None
    assert decided.waiting == (("a", "daily"), ("a", "hourly"))
    logged = policy.waiting_logged(absent, "daily")
    again = policy.plan([logged], states({}), NOW, mono=0.0)
    assert again.waiting == (("a", "hourly"),)


def test_plan_does_not_open_a_rejected_disk() -> None:
    watch = present("a", DAILY, rejected=True, hold_until=3600.0)
    decided = policy.plan([watch], states({}), NOW, mono=10.0)
    assert decided.disk is None and decided.waiting == ()
    assert decided.wake_in == 3590.0  # looks again when the hold ends


def test_plan_waits_for_a_hold_and_wakes_at_its_end() -> None:
    watch = present("a", DAILY, hold_until=100.0)
    decided = policy.plan([watch], states({}), NOW, mono=40.0)
    assert decided.disk is None and decided.wake_in == 60.0
    assert policy.plan([watch], states({}), NOW, mono=100.0).disk == "a"


def test_held_disk_lets_the_next_disk_run() -> None:
    watches = [present("a", DAILY, hold_until=100.0), present("b", DAILY)]
    assert policy.plan(watches, states({}), NOW, mono=0.0).disk == "b"


def test_plan_wakes_at_the_soonest_due_time_over_disks() -> None:
    table = {("daily", "a"): ok(timedelta(hours=20)), ("daily", "b"): ok(timedelta(hours=23))}
    watches = [DiskWatch("a", (DAILY,), present=False), DiskWatch("b", (DAILY,), present=False)]
    decided = policy.plan(watches, states(table), NOW, mono=0.0)
    assert decided.wake_in == timedelta(hours=1).total_seconds()


def test_plan_wakes_for_a_retry() -> None:
    table = {("hourly", "a"): failed(timedelta(minutes=4), timedelta(minutes=30))}
    decided = policy.plan([present("a", HOURLY)], states(table), NOW, mono=0.0)
    assert decided.disk is None
    assert decided.wake_in == timedelta(minutes=6).total_seconds()


def test_nothing_scheduled_never_wakes() -> None:
    decided = policy.plan([present("a", PLUG)], states({("plug", "a"): ok(DAY)}), NOW, 0.0)
    assert decided.disk is None and decided.wake_in == policy.NEVER


def test_started_uses_up_the_plug_and_the_waiting() -> None:
    watch = policy.started(present("a", PLUG, plugged=True, skipped=frozenset({"plug"})))
    assert not watch.plugged and watch.skipped == frozenset()


# -- back-off after a session ----------------------------------------------------------


def after(error: BaseException | None, stopping: bool = False) -> DiskWatch:
    return policy.after_session(
        present("a"), error, mono=1000.0, poll_seconds=5.0, stopping=stopping
    )


def test_rejected_token_holds_until_replug_or_an_hour() -> None:
    watch = after(TokenRejected("wrong disk"))
    assert watch.rejected and watch.hold_until == 1000.0 + policy.RETRY_REJECTED_SECONDS


def test_busy_lock_retries_soon() -> None:
    watch = after(Busy("locked"))
    assert not watch.rejected and watch.hold_until == 1000.0 + policy.RETRY_BUSY_SECONDS


def test_disk_gone_before_open_looks_again_after_a_poll() -> None:
    assert after(DiskAbsent("gone")).hold_until == 1005.0


def test_other_failure_holds_the_disk() -> None:
    watch = after(ColdvaultError("mount failed"))
    assert watch.hold_until == 1000.0 + policy.RETRY_FAILED_AFTER.total_seconds()


def test_success_or_stop_holds_nothing() -> None:
    assert after(None).hold_until == 0.0
    assert after(ColdvaultError("cancelled"), stopping=True).hold_until == 0.0


# -- the status line -------------------------------------------------------------------


def test_next_text_names_the_disk_when_there_are_several() -> None:
    table = {("daily", "a"): ok(timedelta(hours=20)), ("daily", "b"): ok(timedelta(hours=2))}
    watches = [DiskWatch("a", (DAILY,)), DiskWatch("b", (DAILY,))]
    assert policy.next_text(watches, states(table), NOW) == "next: daily on a in 4h"
    single = [DiskWatch("a", (DAILY,))]
    assert policy.next_text(single, states(table), NOW) == "next: daily in 4h"


def test_next_text_due_and_plug_only() -> None:
    assert policy.next_text([DiskWatch("a", (DAILY,))], states({}), NOW) == "due: daily"
    assert policy.next_text([DiskWatch("a", (PLUG,))], states({}), NOW) == "next: plug on plug"
    assert policy.next_text([DiskWatch("a", ())], states({}), NOW) == "no scheduled jobs"
