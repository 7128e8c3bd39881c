"""The process gateway against real processes."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from coldvault.errors import Cancelled, CommandError, CommandNotFound, CommandTimeout
from coldvault.system import proc
from coldvault.system.cancel import CancelToken


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _pid_from(path: Path) -> int:
    for _ in range(200):
        if path.exists() and path.read_text().strip():
            return int(path.read_text())
        threading.Event().wait(0.05)
    raise AssertionError(f"{path} was never written")


def test_run_returns_output_and_exit_code() -> None:
    result = proc.run(["sh", "-c", "printf 'out'; printf 'err' >&2"])
    assert result.returncode == 0
    assert result.stdout == b"out"
    assert result.stderr == b"err"
    assert result.text == "out"
    assert result.argv[0].endswith("/sh")


def test_run_feeds_input() -> None:
    assert proc.run(["tr", "a-z", "A-Z"], input=b"hello").stdout == b"HELLO"


def test_run_text_and_env_and_cwd(tmp_path: Path) -> None:
    text = proc.run_text(["sh", "-c", 'echo "$CV_X $(pwd)"'], env={"CV_X": "42"}, cwd=tmp_path)
    assert text == f"42 {tmp_path}\n"


def test_failure_carries_argv_code_and_stderr_tail() -> None:
    script = "for i in $(seq 1 20); do echo line$i >&2; done; exit 3"
    with pytest.raises(CommandError) as info:
        proc.run(["sh", "-c", script])
    err = info.value
    assert err.returncode == 3
    assert err.argv[1:] == ("-c", script)
    assert err.stderr_tail == tuple(f"line{i}" for i in range(13, 21))
    assert "exited with 3" in err.message and "line20" in err.message


def test_check_false_returns_failure() -> None:
    result = proc.run(["false"], check=False)
    assert result.returncode == 1


def test_timeout_kills_the_child(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    with pytest.raises(CommandTimeout) as info:
        proc.run(["sh", "-c", f"echo $$ > {pidfile}; exec sleep 30"], timeout=0.5)
    assert "timed out" in info.value.message
    assert _gone(_pid_from(pidfile))


def test_cancel_from_another_thread_stops_the_child(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    token = CancelToken()

    def cancel_when_started() -> None:
        _pid_from(pidfile)
        token.cancel("test")

    thread = threading.Thread(target=cancel_when_started)
    thread.start()
    with pytest.raises(Cancelled):
        proc.run(["sh", "-c", f"echo $$ > {pidfile}; exec sleep 30"], cancel=token)
    thread.join()
    assert _gone(_pid_from(pidfile))


def test_child_ignoring_sigterm_is_killed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(proc, "_KILL_GRACE_SECONDS", 0.3)
    pidfile = tmp_path / "pid"
    script = f"trap '' TERM; echo $$ > {pidfile}; while :; do sleep 0.1; done"
    with pytest.raises(CommandTimeout):
        proc.run(["sh", "-c", script], timeout=0.5)
    assert _gone(_pid_from(pidfile))


@pytest.mark.parametrize("shell_string", ["ls -l", b"ls -l"])
def test_shell_strings_are_rejected(shell_string: object) -> None:
    with pytest.raises(TypeError, match="argv list"):
        proc.run(shell_string)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        proc.pipeline(shell_string, ["cat"])  # type: ignore[arg-type]


def test_empty_argv_is_rejected() -> None:
    with pytest.raises(ValueError):
        proc.run([])


def test_missing_program_on_path() -> None:
    with pytest.raises(CommandNotFound) as info:
        proc.run(["coldvault-no-such-program-xyz", "--flag"])
    assert "not installed" in info.value.message
    assert info.value.hint


def test_missing_program_by_path(tmp_path: Path) -> None:
    with pytest.raises(CommandNotFound) as info:
        proc.run([tmp_path / "nope"])
    assert str(tmp_path / "nope") in info.value.message


def test_non_executable_file(tmp_path: Path) -> None:
    script = tmp_path / "script"
    script.write_text("#!/bin/sh\n")
    with pytest.raises(CommandError, match="cannot run"):
        proc.run([script])


def test_which_finds_sbin_programs() -> None:
    found = proc.which("sh")
    assert found is not None and os.access(found, os.X_OK)
    assert proc.which("coldvault-no-such-program-xyz") is None


# -- pipelines -------------------------------------------------------------------


def test_pipeline_counts_bytes_exactly() -> None:
    size = 5 * 1024 * 1024 + 12345
    seen: list[int] = []
    result = proc.pipeline(
        ["head", "-c", str(size), "/dev/zero"], ["wc", "-c"], on_bytes=seen.append
    )
    assert result.bytes_relayed == size
    assert int(result.consumer.stdout) == size
    assert seen and seen[-1] == size
    assert seen == sorted(seen)
    assert result.producer.returncode == 0 and result.consumer.returncode == 0


def test_pipeline_relays_content_unchanged(tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 7)
    src = tmp_path / "src"
    src.write_bytes(data)
    result = proc.pipeline(["cat", src], ["sha256sum"])
    import hashlib

    assert result.consumer.text.split()[0] == hashlib.sha256(data).hexdigest()


def test_pipeline_empty_stream() -> None:
    result = proc.pipeline(["true"], ["wc", "-c"])
    assert result.bytes_relayed == 0
    assert int(result.consumer.stdout) == 0


def test_pipeline_failing_producer_is_named() -> None:
    producer = ["sh", "-c", "head -c 100000 /dev/zero; echo producer-broke >&2; exit 3"]
    with pytest.raises(CommandError) as info:
        proc.pipeline(producer, ["wc", "-c"])
    assert info.value.returncode == 3
    assert info.value.argv[1:] == tuple(producer[1:])
    assert info.value.stderr_tail == ("producer-broke",)


def test_pipeline_failing_consumer_is_named() -> None:
    consumer = ["sh", "-c", "cat > /dev/null; echo consumer-broke >&2; exit 4"]
    with pytest.raises(CommandError) as info:
        proc.pipeline(["head", "-c", "100000", "/dev/zero"], consumer)
    assert info.value.returncode == 4
    assert info.value.argv[1:] == tuple(consumer[1:])
    assert info.value.stderr_tail == ("consumer-broke",)


def test_pipeline_consumer_exiting_early_with_error() -> None:
    consumer = ["sh", "-c", "head -c 10 > /dev/null; echo gave-up >&2; exit 5"]
    with pytest.raises(CommandError) as info:
        proc.pipeline(["cat", "/dev/zero"], consumer)
    assert info.value.returncode == 5
    assert "gave-up" in info.value.stderr_tail


def test_pipeline_consumer_exiting_early_with_success_is_an_error() -> None:
    with pytest.raises(CommandError) as info:
        proc.pipeline(["cat", "/dev/zero"], ["head", "-c", "10"])
    assert "exited before reading all" in info.value.message
    assert info.value.argv[0].endswith("/head")


def test_pipeline_cancel_kills_both_children(tmp_path: Path) -> None:
    ppid, cpid = tmp_path / "producer", tmp_path / "consumer"
    token = CancelToken()
    relayed: list[int] = []

    def count(n: int) -> None:
        relayed.append(n)
        if n > 1024 * 1024:
            token.cancel("test")

    with pytest.raises(Cancelled):
        proc.pipeline(
            ["sh", "-c", f"echo $$ > {ppid}; exec cat /dev/zero"],
            ["sh", "-c", f"echo $$ > {cpid}; exec cat > /dev/null"],
            on_bytes=count,
            cancel=token,
        )
    assert relayed
    assert _gone(_pid_from(ppid)) and _gone(_pid_from(cpid))


def test_pipeline_cancel_when_consumer_stops_reading(tmp_path: Path) -> None:
    """A consumer that never reads fills its pipe; cancel must still get through."""
    ppid, cpid = tmp_path / "producer", tmp_path / "consumer"
    token = CancelToken()

    def cancel_later() -> None:
        _pid_from(cpid)
        token.wait(0.5)
        token.cancel("test")

    thread = threading.Thread(target=cancel_later)
    thread.start()
    with pytest.raises(Cancelled):
        proc.pipeline(
            ["sh", "-c", f"echo $$ > {ppid}; exec cat /dev/zero"],
            ["sh", "-c", f"echo $$ > {cpid}; exec sleep 60"],
            cancel=token,
        )
    thread.join()
    assert _gone(_pid_from(ppid)) and _gone(_pid_from(cpid))


def test_pipeline_timeout_when_consumer_hangs_after_eof(tmp_path: Path) -> None:
    cpid = tmp_path / "consumer"
    with pytest.raises(CommandTimeout):
        proc.pipeline(
            ["echo", "hi"],
            ["sh", "-c", f"echo $$ > {cpid}; cat > /dev/null; exec sleep 60"],
            timeout=1.0,
        )
    assert _gone(_pid_from(cpid))


def test_pipeline_missing_consumer_stops_producer() -> None:
    with pytest.raises(CommandNotFound):
        proc.pipeline(["cat", "/dev/zero"], ["coldvault-no-such-program-xyz"])


def test_spawn_starts_a_child() -> None:
    child = proc.spawn(["sleep", "0"])
    assert child.wait(10) == 0


def test_cancel_token() -> None:
    token = CancelToken()
    assert not token.cancelled
    token.check()
    assert token.wait(0) is False
    token.cancel("because")
    assert token.cancelled and token.wait(10) is True
    with pytest.raises(Cancelled, match="because"):
        token.check()


def test_pipeline_timeout_while_producer_is_silent(tmp_path: Path) -> None:
    ppid = tmp_path / "producer"
    with pytest.raises(CommandTimeout, match="timed out"):
        proc.pipeline(["sh", "-c", f"echo $$ > {ppid}; exec sleep 60"], ["cat"], timeout=0.5)
    assert _gone(_pid_from(ppid))


def test_run_without_capturing_stdout() -> None:
    result = proc.run(["echo", "not captured"], capture_stdout=False)
    assert result.stdout == b""
    assert result.returncode == 0


# -- locale ----------------------------------------------------------------------

_PRINT_LOCALE = ["sh", "-c", "env | grep -E '^(LANG|LANGUAGE|LC_[A-Z_]+)=' | sort"]


@pytest.fixture
def translated_locale(monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment systemd gives a service on a German system."""
    monkeypatch.setenv("LANG", "de_DE.UTF-8")
    monkeypatch.setenv("LANGUAGE", "de:en")
    monkeypatch.setenv("LC_ALL", "de_DE.UTF-8")
    monkeypatch.setenv("LC_MESSAGES", "de_DE.UTF-8")


@pytest.mark.usefixtures("translated_locale")
def test_parsed_commands_run_in_the_c_locale() -> None:
    assert proc.run_text(_PRINT_LOCALE).splitlines() == ["LANG=C.UTF-8"]
    result = proc.pipeline(_PRINT_LOCALE, ["cat"])
    assert result.consumer.text.splitlines() == ["LANG=C.UTF-8"]


@pytest.mark.usefixtures("translated_locale")
def test_c_locale_still_takes_the_callers_env() -> None:
    out = proc.run_text(["sh", "-c", 'echo "$LANG $COLDVAULT_JOB"'], env={"COLDVAULT_JOB": "x"})
    assert out == "C.UTF-8 x\n"


@pytest.mark.usefixtures("translated_locale")
def test_keep_locale_passes_the_users_locale(tmp_path: Path) -> None:
    out = proc.run_text(_PRINT_LOCALE, keep_locale=True).splitlines()
    assert out == [
        "LANG=de_DE.UTF-8",
        "LANGUAGE=de:en",
        "LC_ALL=de_DE.UTF-8",
        "LC_MESSAGES=de_DE.UTF-8",
    ]


@pytest.mark.usefixtures("translated_locale")
def test_hooks_keep_the_users_locale(tmp_path: Path) -> None:
    from coldvault.service.hooks import run_hooks

    seen = tmp_path / "env"
    run_hooks("on_success", [("sh", "-c", f"{_PRINT_LOCALE[2]} > {seen}")], job="j", env={})
    assert "LANG=de_DE.UTF-8" in seen.read_text().splitlines()
    assert "LC_MESSAGES=de_DE.UTF-8" in seen.read_text().splitlines()


@pytest.mark.usefixtures("translated_locale")
def test_spawned_children_run_in_the_c_locale(tmp_path: Path) -> None:
    import subprocess

    child = proc.spawn(_PRINT_LOCALE, stdout=subprocess.PIPE)
    out, _ = child.communicate(timeout=30)
    assert out.decode().splitlines() == ["LANG=C.UTF-8"]
