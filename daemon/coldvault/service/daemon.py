"""``coldvault daemon``: the long-running service that makes backups happen unattended.

One main loop in the main thread: it looks for the disk, decides which jobs
are due, starts a disk session for them in a worker thread, publishes
``STATUS=`` and the runtime status file, and pings the systemd watchdog. The
watchdog ping certifies the main loop: a long backup (in the worker) keeps it
alive, a main loop blocked anywhere stops it, and systemd restarts us.

Signals: SIGTERM/SIGINT cancel the running job at its next safe point, the
disk is torn down, state saved, exit 0. SIGHUP reloads the configuration; an
invalid new one is logged (CONFIG_REJECTED) and the old one kept.
"""

from __future__ import annotations

import contextlib
import faulthandler
import logging
import os
import select
import signal
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from types import FrameType

import schedule

from coldvault.config.model import Config, Job
from coldvault.disk.stack import DiskStack
from coldvault.errors import Busy, ColdvaultError, ConfigError, DiskAbsent, TokenRejected
from coldvault.events import Event, emit
from coldvault.monitor.metrics import write_metrics
from coldvault.monitor.overdue import OverdueWatch
from coldvault.platform.hotplug import DiskWatcher, disk_watcher
from coldvault.progress import Progress
from coldvault.service import due
from coldvault.service import state as st
from coldvault.service.notify import Notifier
from coldvault.service.runner import SessionOutcome, run_session
from coldvault.service.status import RuntimeStatus, format_age
from coldvault.system.cancel import CancelToken

log = logging.getLogger("coldvault.daemon")

RETRY_FAILED_AFTER = timedelta(minutes=10)  # a failed job is not retried sooner
RETRY_REJECTED_SECONDS = 3600.0  # a rejected disk: wait for a replug, or this long
RETRY_BUSY_SECONDS = 10.0  # another coldvault process holds the lock
RUNNING_REFRESH_SECONDS = 1.0  # STATUS= refresh while a job runs
STOP_EXTEND_SECONDS = 30.0  # EXTEND_TIMEOUT_USEC step while a job winds down
STOP_EXTEND_MAX_SECONDS = 600.0  # then stop asking: systemd's stop timeout kills a hung stop


class _Session(threading.Thread):
    """One disk session in the background; the main loop keeps turning meanwhile."""

    def __init__(
        self, config: Config, jobs: list[Job], cancel: CancelToken, wake: Callable[[], None]
    ) -> None:
        super().__init__(name="coldvault-session", daemon=True)
        self.config, self.jobs, self.cancel, self._wake = config, jobs, cancel, wake
        self.current: str | None = None
        self.progress: Progress | None = None
        self.outcome: SessionOutcome | None = None
        self.error: BaseException | None = None
        self.jobs_done = False

    def _on_job(self, job: Job | None) -> None:
        self.current = job.name if job else None
        self.progress = None
        self.jobs_done = job is None  # None: every job has run, the disk is being closed

    def _on_progress(self, progress: Progress) -> None:
        self.progress = progress  # one reference assignment: safe to read from the loop

    def run(self) -> None:
        try:
            self.outcome = run_session(
                self.config,
                self.jobs,
                cancel=self.cancel,
                progress=self._on_progress,
                on_job=self._on_job,
                verify=True,  # after the due backups: what is due for verification
            )
        except ColdvaultError as exc:
            self.error = exc
        except BaseException as exc:  # a bug: report it, keep the daemon alive
            log.exception("disk session crashed")
            self.error = exc
        finally:
            self._wake()

    def describe(self) -> str:
        """The STATUS= line while this session runs."""
        if self.progress is not None:
            return self.progress.describe()
        if self.current is not None:
            return f"{self.current}: starting"
        if self.jobs_done:
            return "closing the backup disk"
        return "opening the backup disk for " + ", ".join(j.name for j in self.jobs)


class Daemon:
    """The service's state and main loop."""

    def __init__(
        self, load_config: Callable[[], Config], *, clock: Callable[[], datetime] = due.local_now
    ) -> None:
        self._load = load_config
        self.config = load_config()
        self._clock = clock
        self._overdue = OverdueWatch()
        self.stop = CancelToken()
        self.notifier = Notifier()
        self._reload = False
        self._session: _Session | None = None
        self._present: bool | None = None
        self._plugged = False  # the disk appeared since the last session started
        self._hold_until = 0.0  # monotonic: no new session before this
        self._rejected = False  # token rejected: wait for the disk to be replugged
        self._skipped: set[str] = set()  # JOB_SKIPPED already logged during this absence
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._next_wake = float("inf")  # seconds until the next due time
        self._scheduler = schedule.Scheduler()
        self._watcher: DiskWatcher = disk_watcher(self.config.settings.poll_seconds)
        self._runtime = RuntimeStatus(self.config.settings.runtime_dir)
        self._state = st.StateFile(self.config.settings.state_file)
        self._stack = DiskStack(self.config.disk)  # only for is_present(): never opened here
        self._state_error: str | None = None
        self._schedule_wakeups()

    # -- main loop -------------------------------------------------------------------

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT; return the exit code (0 after a clean stop)."""
        with self._signals():
            emit(
                log,
                Event.DAEMON_STARTED,
                f"coldvault daemon started: {len(self.config.jobs)} job(s), "
                f"watching the disk by {self._watcher.description}",
            )
            write_metrics(self.config, due.local_now())  # the metrics file exists from the start
            self._turn()
            self.notifier.ready(self._status_line())
            try:
                while not self.stop.cancelled:
                    self._sleep()
                    self._turn()
            finally:
                self._shutdown()
        return 0

    def _turn(self) -> None:
        """One pass: watchdog, reload, disk presence, session bookkeeping, status."""
        self.notifier.watchdog()
        if self._reload:
            self._reload = False
            self._reload_config()
        self._look_at_disk()
        if self._session is not None and not self._session.is_alive():
            self._finish_session(self._session)
            self._session = None
        if self._session is None and not self.stop.cancelled:
            self._maybe_start()
        self._overdue.check(self.config, self._clock())
        self._publish()

    def _sleep(self) -> None:
        """Wait for a signal, a udev event, the end of a session or the next deadline."""
        timeout = min(
            RUNNING_REFRESH_SECONDS if self._session else self._watcher.recheck_seconds,
            self._next_wake,
        )
        idle = self._scheduler.idle_seconds if self._scheduler.jobs else None
        if idle is not None:
            timeout = min(timeout, idle)
        held = self._hold_until - time.monotonic()
        if held > 0:
            timeout = min(timeout, held)
        until_ping = self.notifier.seconds_to_watchdog()
        if until_ping is not None:
            timeout = min(timeout, until_ping)
        fds = [self._wake_r]
        watch_fd = self._watcher.fileno()
        if watch_fd is not None:
            fds.append(watch_fd)
        ready, _, _ = select.select(fds, [], [], max(0.0, timeout))
        if self._wake_r in ready:
            with contextlib.suppress(BlockingIOError):
                while os.read(self._wake_r, 512):
                    pass
        if watch_fd is not None and watch_fd in ready:
            self._watcher.drain()
        self._scheduler.run_pending()

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.write(self._wake_w, b"w")

    # -- the disk and the jobs -------------------------------------------------------

    def _look_at_disk(self) -> None:
        present = self._stack.is_present()
        disk = self.config.disk.device or self.config.disk.mount.point
        if present and self._present is False:
            emit(log, Event.DISK_APPEARED, f"backup disk {disk} appeared", device=str(disk))
            self._plugged = True
        elif not present and self._present:
            emit(log, Event.DISK_ABSENT, f"backup disk {disk} went away", device=str(disk))
        if not present:
            # A replug gets a fresh try: new token check, no back-off from the last disk.
            self._rejected = False
            self._hold_until = 0.0
        self._present = present

    def _states(self) -> dict[str, st.JobState] | None:
        """The state file's content; None (logged once per distinct error) when unreadable."""
        try:
            states = self._state.load()
        except ColdvaultError as exc:
            if exc.message != self._state_error:
                log.error("%s", exc)
            self._state_error = exc.message
            return None
        self._state_error = None
        return states

    def _maybe_start(self) -> None:
        now = self._clock()
        states = self._states()
        if states is None:  # never run jobs blind: we would not know what is due
            self._next_wake = self.config.settings.poll_seconds
            return
        todo = [
            job
            for job in due.jobs_to_run(
                self.config.jobs,
                lambda name: states.get(name, st.JobState()).last_success,
                now,
                plugged=self._plugged,
            )
            # A failed job waits before its retry, unless the disk was just (re)plugged.
            if self._plugged or not self._failed_recently(states.get(job.name), now)
        ]
        self._next_wake = self._seconds_to_next_due(states, now)
        if not todo:
            return
        if not self._present:
            for job in todo:
                if job.name not in self._skipped:
                    self._skipped.add(job.name)
                    emit(
                        log,
                        Event.JOB_SKIPPED,
                        f"{job.name}: due, waiting for the backup disk",
                        job=job.name,
                    )
            return
        if self._rejected or time.monotonic() < self._hold_until:
            return
        self._plugged = False
        self._skipped.clear()
        log.info("starting a disk session for %s", ", ".join(j.name for j in todo))
        self._session = _Session(self.config, todo, self.stop, self._wake)
        self._session.start()

    def _failed_recently(self, state: st.JobState | None, now: datetime) -> bool:
        """A job that just failed waits before its retry (no tight failure loop)."""
        if state is None or state.result != st.FAILED or state.last_attempt is None:
            return False
        return now - state.last_attempt < RETRY_FAILED_AFTER

    def _seconds_to_next_due(self, states: dict[str, st.JobState], now: datetime) -> float:
        times = []
        for job in self.config.jobs:
            state = states.get(job.name, st.JobState())
            when = due.next_due(job.when, state.last_success, now)
            if when is not None and when > now:
                times.append(when)
            if state.result == st.FAILED and state.last_attempt is not None:
                retry = state.last_attempt + RETRY_FAILED_AFTER
                if retry > now:
                    times.append(retry)
        return (min(times) - now).total_seconds() if times else float("inf")

    def _finish_session(self, session: _Session) -> None:
        session.join()
        err = session.error
        if isinstance(err, TokenRejected):
            self._rejected = True  # until the disk is unplugged, or an hour passed
            self._hold_until = time.monotonic() + RETRY_REJECTED_SECONDS
        elif isinstance(err, Busy):
            log.info("%s; retrying in %.0f s", err.message, RETRY_BUSY_SECONDS)
            self._hold_until = time.monotonic() + RETRY_BUSY_SECONDS
        elif isinstance(err, DiskAbsent):
            # It went away between the check and the open: look again after a poll interval.
            self._hold_until = time.monotonic() + self.config.settings.poll_seconds
        elif err is not None and not self.stop.cancelled:
            # Jobs recorded the failure; do not hammer a broken disk.
            self._hold_until = time.monotonic() + RETRY_FAILED_AFTER.total_seconds()

    # -- status ----------------------------------------------------------------------

    def _status_line(self) -> str:
        if self._session is not None:
            return self._session.describe()
        if self._rejected:
            return "backup disk rejected (token mismatch): attach the right disk"
        where = "disk present" if self._present else "waiting for disk"
        return f"{where}; {self._next_text()}"

    def _next_text(self) -> str:
        now = self._clock()
        states = self._states()
        if states is None:
            return f"state file unreadable: {self._state_error}"
        soonest: tuple[datetime, str] | None = None
        plug_only = []
        for job in self.config.jobs:
            state = states.get(job.name, st.JobState())
            when = due.next_due(job.when, state.last_success, now)
            if when is None:
                if job.when.on_plug:
                    plug_only.append(job.name)
                continue
            if soonest is None or when < soonest[0]:
                soonest = (when, job.name)
        if soonest is not None:
            when, name = soonest
            if when <= now:
                return f"due: {name}"
            return f"next: {name} in {format_age(when - now)}"
        if plug_only:
            return "next: " + ", ".join(plug_only) + " on plug"
        return "no scheduled jobs"

    def _publish(self) -> None:
        line = self._status_line()
        self.notifier.status(line)
        session = self._session
        try:
            self._runtime.write(
                line,
                disk_present=self._present,
                progress=session.progress if session else None,
                job=session.current if session else None,
            )
        except OSError as exc:
            log.warning("cannot write the runtime status %s: %s", self._runtime.path, exc)

    # -- configuration, signals, shutdown ----------------------------------------------

    def _reload_config(self) -> None:
        try:
            new = self._load()
        except ConfigError as exc:
            emit(
                log,
                Event.CONFIG_REJECTED,
                f"new configuration rejected, keeping the old one: {exc}",
                level=logging.ERROR,
                error=exc.message,
            )
            return
        old = self.config
        self.config = new
        if new.settings.poll_seconds != old.settings.poll_seconds:
            self._watcher.close()
            self._watcher = disk_watcher(new.settings.poll_seconds)
        self._runtime = RuntimeStatus(new.settings.runtime_dir)
        self._state = st.StateFile(new.settings.state_file)
        self._stack = DiskStack(new.disk)
        self._schedule_wakeups()
        emit(log, Event.CONFIG_RELOADED, f"configuration reloaded: {len(new.jobs)} job(s)")

    def _schedule_wakeups(self) -> None:
        """Wall-clock wake-ups for ``at`` times (the due rule decides what runs)."""
        self._scheduler.clear()
        times = sorted({t for job in self.config.jobs for t in job.when.at})
        for t in times:
            self._scheduler.every().day.at(t.strftime("%H:%M:%S")).do(lambda: None)

    @contextlib.contextmanager
    def _signals(self) -> Iterator[None]:
        def on_stop(signum: int, _frame: FrameType | None) -> None:
            self.stop.cancel(f"{signal.Signals(signum).name} received")

        def on_hup(_signum: int, _frame: FrameType | None) -> None:
            self._reload = True

        # SIGUSR1 prints every thread's stack to stderr (the journal): a hung daemon says where.
        faulthandler.register(signal.SIGUSR1, all_threads=True)
        old_fd = signal.set_wakeup_fd(self._wake_w)
        old = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
        signal.signal(signal.SIGTERM, on_stop)
        signal.signal(signal.SIGINT, on_stop)
        signal.signal(signal.SIGHUP, on_hup)
        try:
            yield
        finally:
            for signum, handler in old.items():
                signal.signal(signum, handler)
            signal.set_wakeup_fd(old_fd)

    def _shutdown(self) -> None:
        reason = self.stop.reason if self.stop.cancelled else "main loop ended"
        self.notifier.stopping(f"stopping: {reason}")
        emit(log, Event.DAEMON_STOPPING, f"coldvault daemon stopping ({reason})")
        self.stop.cancel(reason)
        session = self._session
        if session is not None:
            # The job stops at its next safe point, then the disk is torn down.
            give_up = time.monotonic() + STOP_EXTEND_MAX_SECONDS
            while session.is_alive():
                if time.monotonic() < give_up:
                    self.notifier.extend_timeout(STOP_EXTEND_SECONDS)
                self.notifier.status(f"stopping: {session.describe()}; tearing down")
                session.join(STOP_EXTEND_SECONDS / 3)
                self.notifier.watchdog()
            self._finish_session(session)
            self._session = None
        self._watcher.close()
        self._runtime.clear()
        os.close(self._wake_r)
        os.close(self._wake_w)
