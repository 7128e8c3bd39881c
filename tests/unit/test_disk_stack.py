"""Stack orchestration: open order, reverse teardown of only our layers, every step tried.

The layers here are small in-process objects that record calls (the real
layers are exercised on a real kernel in tests/vm); the stack logic under test
is the real one.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from coldvault.config.model import DiskConfig, MountConfig, TokenConfig
from coldvault.disk import token
from coldvault.disk.layers import LayerStatus
from coldvault.disk.stack import DiskStack
from coldvault.errors import Cancelled, DiskError, TokenRejected
from coldvault.system.cancel import CancelToken


class Recorded:
    """A layer that records open/close calls in a shared journal."""

    def __init__(
        self,
        name: str,
        journal: list[str],
        *,
        already_open: bool = False,
        fail_open: bool = False,
        fail_close: bool = False,
    ) -> None:
        self.name = name
        self.journal = journal
        self.up = already_open
        self.fail_open = fail_open
        self.fail_close = fail_close
        self.opened_by_us = False

    def is_open(self) -> bool:
        return self.up

    def open(self) -> None:
        if self.up:
            return
        self.opened_by_us = True
        self.journal.append(f"open {self.name}")
        if self.fail_open:
            raise DiskError(f"{self.name} refused to open")
        self.up = True

    def close(self) -> None:
        self.journal.append(f"close {self.name}")
        if self.fail_close:
            raise DiskError(f"{self.name} is busy")
        self.up = False

    def status(self) -> LayerStatus:
        return LayerStatus(self.name, self.name, True, self.up)


def _stack(tmp_path: Path, layers: list[Recorded], *, with_token: bool = True) -> DiskStack:
    root = tmp_path / "backup"
    root.mkdir(exist_ok=True)
    tok = TokenConfig(hash_file=tmp_path / "token.sha512") if with_token else None
    if tok is not None and not tok.hash_file.exists():
        token.init(root, tok)
    stack = DiskStack(DiskConfig(mount=MountConfig(point=root, require_mount=False), token=tok))
    stack.layers = list(layers)
    return stack


def test_open_in_order_close_in_reverse(tmp_path: Path) -> None:
    journal: list[str] = []
    names = ["array", "luks", "lvm", "mount"]
    stack = _stack(tmp_path, [Recorded(n, journal) for n in names])
    assert stack.open() == tmp_path / "backup"
    assert stack.opened_layers == names
    stack.close()
    assert journal == [f"open {n}" for n in names] + [f"close {n}" for n in reversed(names)]
    assert stack.opened_layers == []
    stack.close()  # idempotent: nothing left to close
    assert len(journal) == 8


def test_layers_found_open_are_left_open(tmp_path: Path) -> None:
    journal: list[str] = []
    layers = [
        Recorded("array", journal, already_open=True),
        Recorded("luks", journal, already_open=True),
        Recorded("lvm", journal),
        Recorded("mount", journal),
    ]
    stack = _stack(tmp_path, layers)
    stack.open()
    stack.close()
    assert journal == ["open lvm", "open mount", "close mount", "close lvm"]
    assert layers[0].is_open() and layers[1].is_open()


def test_failed_open_closes_what_was_opened(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    journal: list[str] = []
    layers = [Recorded("array", journal), Recorded("luks", journal, fail_open=True)]
    layers.append(Recorded("mount", journal))
    stack = _stack(tmp_path, layers)
    with (
        caplog.at_level(logging.INFO, logger="coldvault"),
        pytest.raises(DiskError, match="luks refused"),
    ):
        stack.open()
    # luks never came up: it is not closed, and not reported as closed
    assert journal == ["open array", "open luks", "close array"]
    assert [r.getMessage() for r in caplog.records if "closed" in r.getMessage()] == [
        "backup disk closed (array); it may be unplugged"
    ]
    assert not any(layer.is_open() for layer in layers)


def test_every_teardown_step_is_attempted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    journal: list[str] = []
    layers = [
        Recorded("array", journal),
        Recorded("luks", journal, fail_close=True),
        Recorded("lvm", journal),
        Recorded("mount", journal, fail_close=True),
    ]
    stack = _stack(tmp_path, layers)
    stack.open()
    with caplog.at_level(logging.INFO, logger="coldvault"), pytest.raises(DiskError) as info:
        stack.close()
    assert journal[-4:] == ["close mount", "close lvm", "close luks", "close array"]
    assert "mount: mount is busy" in info.value.message
    assert "luks: luks is busy" in info.value.message
    assert stack.opened_layers == ["luks", "mount"]  # still ours: a later close retries them
    assert info.value.reported  # logged once, as DISK_ERROR; the CLI does not repeat it
    errors = [r for r in caplog.records if "teardown incomplete" in r.getMessage()]
    assert len(errors) == 1 and errors[0].levelno == logging.ERROR
    assert "do not unplug" in errors[0].getMessage()
    assert not [r for r in caplog.records if "backup disk closed" in r.getMessage()]


def test_wrong_token_tears_down_and_logs_a_security_event(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    journal: list[str] = []
    stack = _stack(tmp_path, [Recorded("luks", journal), Recorded("mount", journal)])
    (tmp_path / "backup" / ".token").write_bytes(b"someone else's disk")
    with caplog.at_level(logging.INFO, logger="coldvault"), pytest.raises(TokenRejected):
        stack.open()
    assert journal == ["open luks", "open mount", "close mount", "close luks"]
    events = [getattr(r, "journal_fields", {}).get("COLDVAULT_EVENT") for r in caplog.records]
    assert "token_rejected" in events
    assert "disk_opened" not in events


def test_cancel_before_a_layer_stops_and_tears_down(tmp_path: Path) -> None:
    journal: list[str] = []
    cancel = CancelToken()

    class CancelAfterOpen(Recorded):
        def open(self) -> None:
            super().open()
            cancel.cancel("test")

    layers = [CancelAfterOpen("array", journal), Recorded("luks", journal)]
    stack = _stack(tmp_path, layers)
    stack.cancel = cancel
    with pytest.raises(Cancelled):
        stack.open()
    assert journal == ["open array", "close array"]


def test_adopt_marks_recorded_open_layers_only(tmp_path: Path) -> None:
    journal: list[str] = []
    layers = [
        Recorded("array", journal, already_open=True),
        Recorded("luks", journal, already_open=True),
        Recorded("lvm", journal),
    ]
    stack = _stack(tmp_path, layers)
    stack.adopt(["luks", "lvm"])  # lvm is recorded but not open: nothing to close
    assert stack.opened_layers == ["luks"]
    stack.close()
    assert journal == ["close luks"]
    stack.adopt_all_open()
    assert stack.opened_layers == ["array"]


def test_each_disk_has_its_own_open_record(tmp_path: Path) -> None:
    """Layer names are the same on every disk ("luks", "mount"): one shared record
    would let `close --disk office` close what only `open --disk home` opened."""
    from coldvault.disk import record

    record.save(tmp_path, ["luks", "mount"])  # the one disk of a disk: configuration
    record.save(tmp_path, ["mount"], "office")
    assert record.load(tmp_path, "office") == ["mount"]
    record.save(tmp_path, ["lvm"], "office")  # a second open of the same disk merges
    assert record.load(tmp_path, "office") == ["mount", "lvm"]
    record.clear(tmp_path)
    assert record.load(tmp_path) is None
    assert record.load(tmp_path, "office") == ["mount", "lvm"]
    assert record.record_path(tmp_path) == tmp_path / "open-layers.json"


def test_plain_folder_stack_without_layers(tmp_path: Path) -> None:
    stack = _stack(tmp_path, [], with_token=False)
    assert stack.open() == tmp_path / "backup"
    stack.close()
    missing = DiskStack(DiskConfig(mount=MountConfig(point=tmp_path / "nope", require_mount=False)))
    with pytest.raises(DiskError, match="does not exist"):
        missing.open()


def test_layer_opened_by_udev_after_our_step_is_ours(tmp_path: Path) -> None:
    """LVM autoactivation opens the LV as soon as we open LUKS: we close it too."""
    journal: list[str] = []

    class AutoActivating(Recorded):
        def open(self) -> None:
            super().open()
            layers[2].up = True  # udev activated the logical volume on top

    layers = [
        Recorded("array", journal, already_open=True),
        AutoActivating("luks", journal),
        Recorded("lvm", journal),
        Recorded("mount", journal),
    ]
    stack = _stack(tmp_path, layers)
    stack.open()
    assert stack.opened_layers == ["luks", "lvm", "mount"]
    stack.close()
    assert journal == ["open luks", "open mount", "close mount", "close lvm", "close luks"]
    assert layers[0].is_open()
