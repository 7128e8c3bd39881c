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
import dataclasses
import faulthandler
import logging
import os
import select
import signal
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from types import FrameType

import schedule

from coldvault.config.model import DEFAULT_DISK, Config, DiskConfig, Job
from coldvault.disk.stack import DiskStack
from coldvault.errors import Busy, ColdvaultError, ConfigError
from coldvault.events import Event, emit
from coldvault.monitor.metrics import write_metrics
from coldvault.monitor.overdue import OverdueWatch
from coldvault.offsite.run import offsite_due_without_disk
from coldvault.platform.hotplug import DiskWatcher, disk_watcher
from coldvault.progress import Progress
from coldvault.service import due, policy
from coldvault.service import state as st
from coldvault.service.notify import Notifier
from coldvault.service.runner import SessionOutcome, offsite_copies, run_session
from coldvault.service.status import RuntimeStatus
from coldvault.system.cancel import CancelToken

log = logging.getLogger("coldvault.daemon")

RUNNING_REFRESH_SECONDS = 1.0  # STATUS= refresh while a job runs
STOP_EXTEND_SECONDS = 30.0  # EXTEND_TIMEOUT_USEC step while a job winds down
STOP_EXTEND_MAX_SECONDS = 600.0  # then stop asking: systemd's stop timeout kills a hung stop
# Between two disk-less offsite turns: an unreachable repository is not retried in a loop.
OFFSITE_RETRY_SECONDS = 900.0


def _disks_of(config: Config) -> list[tuple[str, DiskConfig, tuple[Job, ...]]]:
    """Every configured disk: its name, its stack and the jobs that back up to it."""
    return [(d.name, d.config, config.jobs_on(d.name)) for d in config.disks]


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

    what = "disk session"

    def run(self) -> None:
        try:
            self._work()
        except ColdvaultError as exc:
            self.error = exc
        except BaseException as exc:  # a bug: report it, keep the daemon alive
            log.exception("%s crashed", self.what)
            self.error = exc
        finally:
            self._wake()

    def _work(self) -> None:
        self.outcome = run_session(
            self.config,
            self.jobs,
            cancel=self.cancel,
            progress=self._on_progress,
            on_job=self._on_job,
            verify=True,  # after the due backups: what is due for verification
            offsite=True,  # then the due offsite copies
        )

    def describe(self) -> str:
        """The STATUS= line while this session runs."""
        if self.progress is not None:
            return self.progress.describe()
        if self.current is not None:
            return f"{self.current}: starting"
        if self.jobs_done:
            return "closing the backup disk"
        disk = "the backup disk"
        if self.config.disk_name != DEFAULT_DISK:
            disk = f"backup disk {self.config.disk_name}"
        return f"opening {disk} for " + ", ".join(j.name for j in self.jobs)


class _OffsiteSession(_Session):
    """Offsite copies that need no disk (``offsite_from: source``), while no disk is open."""

    what = "offsite session"

    def _work(self) -> None:
        offsite_copies(
            self.config,
            from_disk=False,
            cancel=self.cancel,
            progress=self._on_progress,
            clock=due.local_now,
        )

    def describe(self) -> str:
        """The STATUS= line while these copies run."""
        return self.progress.describe() if self.progress is not None else "offsite copies"


class Daemon:
    """The service's main loop: the mechanics around :mod:`coldvault.service.policy`."""

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
        self._session_disk: str | None = None
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._next_wake = float("inf")  # seconds until the next due time
        self._scheduler = schedule.Scheduler()
        self._offsite_not_before = 0.0  # monotonic: no disk-less offsite turn before this
        self._watcher: DiskWatcher = disk_watcher(self.config.settings.poll_seconds)
        self._runtime = RuntimeStatus(self.config.settings.runtime_dir)
        self._state = st.StateFile(self.config.settings.state_file)
        self._watches: dict[str, policy.DiskWatch] = {}
        self._stacks: dict[str, DiskStack] = {}  # only for is_present(): never opened here
        self._set_disks()
        self._state_error: str | None = None
        self._absent_warned: set[str] = set()  # DISK_LONG_ABSENT logged during this absence
        self._schedule_wakeups()

    def _set_disks(self) -> None:
        """One watch and one presence probe per configured disk (kept across reloads)."""
        old = self._watches
        self._watches = {}
        self._stacks = {}
        for name, disk, jobs in _disks_of(self.config):
            kept = old.get(name)
            watch = policy.DiskWatch(name, jobs)
            if kept is not None:
                watch = dataclasses.replace(kept, jobs=jobs)
            self._watches[name] = watch
            self._stacks[name] = DiskStack(disk)

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
            self._warn_config()
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
        self._look_at_disks()
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

    # -- the disks and the jobs ------------------------------------------------------

    def _look_at_disks(self) -> None:
        for name, watch in self._watches.items():
            stack = self._stacks[name]
            seen = policy.observe(watch, stack.is_present())
            self._watches[name] = seen.watch
            disk = stack.disk.device or stack.disk.mount.point
            label = "backup disk" if name == DEFAULT_DISK else f"backup disk {name}:"
            if seen.appeared:
                emit(log, Event.DISK_APPEARED, f"{label} {disk} appeared", device=str(disk))
            elif seen.went_away:
                emit(log, Event.DISK_ABSENT, f"{label} {disk} went away", device=str(disk))

    def _states(self) -> dict[str, st.DiskState] | None:
        """The state file's content; None (logged once per distinct error) when unreadable."""
        try:
            states = self._state.load_disks()
        except ColdvaultError as exc:
            if exc.message != self._state_error:
                log.error("%s", exc)
            self._state_error = exc.message
            return None
        self._state_error = None
        return states

    def _state_of(self, states: dict[str, st.DiskState]) -> policy.StateOf:
        empty = st.DiskState()
        return lambda job, disk: states.get(disk, empty).jobs.get(job, st.JobState())

    def _maybe_start(self) -> None:
        states = self._states()
        if states is None:  # never run jobs blind: we would not know what is due
            self._next_wake = self.config.settings.poll_seconds
            return
        now = self._clock()
        self._warn_absent(states, now)
        decided = policy.plan(
            list(self._watches.values()), self._state_of(states), now, time.monotonic()
        )
        self._next_wake = decided.wake_in
        for disk, job in decided.waiting:
            self._watches[disk] = policy.waiting_logged(self._watches[disk], job)
            where = "the backup disk" if disk == DEFAULT_DISK else f"backup disk {disk}"
            emit(log, Event.JOB_SKIPPED, f"{job}: due, waiting for {where}", job=job)
        if decided.disk is None:
            self._maybe_start_offsite(now)
            return
        self._watches[decided.disk] = policy.started(self._watches[decided.disk])
        names = ", ".join(j.name for j in decided.jobs)
        log.info("starting a disk session on %s for %s", decided.disk, names)
        self._session_disk = decided.disk
        config = self.config.for_disk(decided.disk)
        self._session = _Session(config, list(decided.jobs), self.stop, self._wake)
        self._session.start()

    def _maybe_start_offsite(self, now: datetime) -> None:
        """Start the due offsite copies that need no disk (at most every OFFSITE_RETRY_SECONDS)."""
        mono = time.monotonic()
        if mono < self._offsite_not_before or not offsite_due_without_disk(self.config, now):
            return
        self._offsite_not_before = mono + OFFSITE_RETRY_SECONDS
        self._session = _OffsiteSession(self.config, [], self.stop, self._wake)
        self._session.start()

    def _warn_absent(self, states: dict[str, st.DiskState], now: datetime) -> None:
        """One DISK_LONG_ABSENT per disk and absence longer than settings.disk_absent_warning."""
        limit = self.config.settings.disk_absent_warning
        for name, watch in self._watches.items():
            seen = states.get(name, st.DiskState()).last_seen
            away = due.absent_too_long(seen, bool(watch.present), now, limit)
            if away is None:
                self._absent_warned.discard(name)
            elif name not in self._absent_warned:
                self._absent_warned.add(name)
                emit(
                    log,
                    Event.DISK_LONG_ABSENT,
                    f"backup disk {name}: last seen {away.days} days ago",
                    level=logging.WARNING,
                    disk=name,
                    days=away.days,
                )

    def _finish_session(self, session: _Session) -> None:
        session.join()
        err = session.error
        if isinstance(err, Busy):
            log.info("%s; retrying in %.0f s", err.message, policy.RETRY_BUSY_SECONDS)
        name = self._session_disk
        if name is not None and name in self._watches:
            self._watches[name] = policy.after_session(
                self._watches[name],
                err,
                mono=time.monotonic(),
                poll_seconds=self.config.settings.poll_seconds,
                stopping=self.stop.cancelled,
            )
        self._session_disk = None

    # -- status ----------------------------------------------------------------------

    def _status_line(self) -> str:
        if self._session is not None:
            return self._session.describe()
        rejected = [w.name for w in self._watches.values() if w.rejected]
        if rejected and len(self._watches) == 1:
            return "backup disk rejected (token mismatch): attach the right disk"
        where = "disk present" if self._any_present() else "waiting for disk"
        line = f"{where}; {self._next_text()}"
        if rejected:  # several disks: the others are still served
            line += f"; disk {', '.join(rejected)} rejected (token mismatch)"
        return line

    def _any_present(self) -> bool:
        return any(w.present for w in self._watches.values())

    def _next_text(self) -> str:
        states = self._states()
        if states is None:
            return f"state file unreadable: {self._state_error}"
        return policy.next_text(list(self._watches.values()), self._state_of(states), self._clock())

    def _publish(self) -> None:
        line = self._status_line()
        self.notifier.status(line)
        session = self._session
        try:
            self._runtime.write(
                line,
                disk_present=self._any_present(),
                disks_present={name: w.present for name, w in self._watches.items()},
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
        self._set_disks()
        self._schedule_wakeups()
        emit(log, Event.CONFIG_RELOADED, f"configuration reloaded: {len(new.jobs)} job(s)")
        self._warn_config()

    def _warn_config(self) -> None:
        for line in self.config.warnings:
            log.warning("%s", line)

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
