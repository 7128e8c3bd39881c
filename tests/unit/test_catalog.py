"""The journal catalog has one entry per Event, with matching ids, and journalctl accepts it."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from tests.conftest import ROOT

from coldvault.events import Event

CATALOG = ROOT / "systemd" / "coldvault.catalog"


def entries() -> dict[str, list[str]]:
    """MESSAGE_ID -> the entry's lines (header and body)."""
    out: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in CATALOG.read_text().splitlines():
        m = re.fullmatch(r"-- ([0-9a-f]{32})", line)
        if m:
            assert m.group(1) not in out, f"duplicate entry {m.group(1)}"
            current = out[m.group(1)] = []
        elif current is not None:
            current.append(line)
    return out


def test_every_event_has_exactly_one_entry() -> None:
    found = entries()
    assert set(found) == {e.message_id for e in Event}


def test_entries_are_complete() -> None:
    for msgid, lines in entries().items():
        header = lines[: lines.index("")]
        keys = {h.split(":", 1)[0] for h in header}
        assert {"Subject", "Defined-By", "Documentation"} <= keys, msgid
        body = [ln for ln in lines[len(header) :] if ln.strip()]
        assert body, f"entry {msgid} has no explanation"


def test_journalctl_compiles_the_catalog(tmp_path: Path) -> None:
    from tests.conftest import require

    journalctl = shutil.which("journalctl")
    require(journalctl is not None, "journalctl is not installed")
    assert journalctl is not None
    (tmp_path / "usr/lib/systemd/catalog").mkdir(parents=True)
    (tmp_path / "var/lib/systemd/catalog").mkdir(parents=True)
    shutil.copy(CATALOG, tmp_path / "usr/lib/systemd/catalog/coldvault.catalog")
    subprocess.run([journalctl, f"--root={tmp_path}", "--update-catalog"], check=True)
    listed = subprocess.run(
        [journalctl, f"--root={tmp_path}", "--list-catalog"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    ids = {line.split()[0] for line in listed.splitlines() if line.strip()}
    assert ids == {e.message_id for e in Event}


def test_unplugging_is_promised_only_after_a_complete_teardown() -> None:
    found = entries()
    closed = " ".join(found[Event.DISK_CLOSED.message_id])
    error = " ".join(found[Event.DISK_ERROR.message_id])
    assert "every step succeeded" in closed and "may be unplugged" in closed
    assert "COLDVAULT_PHASE=close" in closed  # points to where a failed teardown goes
    assert "Do not unplug" in error and "coldvault close" in error
