"""The ``disk:`` section matching a prepared disk, printed and optionally written.

Written as text (not dumped from a mapping) so the keys come out in the order
the README documents them, with a comment saying where they came from.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import yaml

from coldvault.disk.prepare.plan import InitOptions
from coldvault.errors import ConfigError

_TOP_KEY = re.compile(r"^[^\s#-]")


def disk_section(opts: InitOptions, *, wait_device: Path, array_uuid: str | None) -> str:
    """YAML text of the ``disk:`` section for a disk prepared with ``opts``."""
    uuid = array_uuid or "UUID-FROM-mdadm--detail"  # dry run: the array does not exist yet
    return (
        "# written by `coldvault disk init`\n"
        "disk:\n"
        f"  device: {wait_device}\n"
        "  array:\n"
        f"    device: {opts.array}\n"
        f'    uuid: "{uuid}"\n'
        "  luks:\n"
        f"    key_file: {opts.key_file}\n"
        f"    name: {opts.luks_name}\n"
        "  lvm:\n"
        f"    vg: {opts.vg}\n"
        f"    lv: {opts.lv}\n"
        "  mount:\n"
        f"    point: {opts.mount_point}\n"
        f"    device: {opts.lv_path}\n"
        "    fstype: btrfs\n"
        "  token:\n"
        f"    hash_file: {opts.hash_file}\n"
        f"    file: {opts.token_file}\n"
    )


def _has_disk_section(text: str) -> bool:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        # Not valid YAML: fall back to a plain look for a top-level "disk:" line.
        return any(line.startswith("disk:") for line in text.splitlines())
    return isinstance(data, dict) and "disk" in data


def replace_disk_section(text: str, section: str) -> str:
    """``text`` with its top-level ``disk:`` block replaced by ``section`` (or appended)."""
    lines = text.splitlines(keepends=True)
    start = next((i for i, ln in enumerate(lines) if ln.startswith("disk:")), None)
    if start is None:
        sep = "" if not text or text.endswith("\n") else "\n"
        return text + sep + ("\n" if text else "") + section
    end = start + 1
    while end < len(lines) and not _TOP_KEY.match(lines[end]):
        end += 1
    # Keep comment lines right before the next top-level key with that key.
    while end - 1 > start and lines[end - 1].lstrip().startswith("#"):
        end -= 1
    return "".join(lines[:start]) + section + "".join(lines[end:])


def check_writable(path: Path, *, force: bool) -> None:
    """Refuse (before the disk is touched) a config that already has a ``disk:`` section."""
    if path.exists() and _has_disk_section(path.read_text()) and not force:
        raise ConfigError(
            f"{path} already has a disk: section; it was left alone",
            hint="pass --force to replace that section (the rest of the file is kept)",
        )


def write_disk_section(path: Path, section: str, *, force: bool) -> None:
    """Write ``section`` into the configuration ``path``, keeping everything else in it."""
    check_writable(path, force=force)
    old = path.read_text() if path.exists() else ""
    new = replace_disk_section(old, section)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(new)
    if path.exists():
        os.chmod(tmp, path.stat().st_mode & 0o7777)
    os.replace(tmp, path)
