"""The backup disks of a configuration: ``disk:`` (one disk, ``default``) or ``disks:``.

Each entry of ``disks:`` is a ``disk:`` mapping plus ``name:``. Names are unique,
and two disks may not share a token hash file, a LUKS mapping name or a mount
point: coldvault cannot tell when two disks can never be attached at once, so
it refuses rather than guess (two disks on one mount point would let one
disk's retention run on the other's files; one hash file would make two disks
one identity).
"""

from __future__ import annotations

from collections.abc import Callable

from yaml.nodes import MappingNode, Node, SequenceNode

from coldvault.config.converters import Reader
from coldvault.config.model import DEFAULT_DISK, Disk, DiskConfig, yaml_keys
from coldvault.config.sections import Section
from coldvault.config.yamlnodes import describe

BuildDisk = Callable[[Section], DiskConfig | None]


def read_disks(
    reader: Reader, top: Section, disk: DiskConfig, build: BuildDisk
) -> tuple[Disk, ...]:
    """The configured disks; problems are recorded on ``reader``.

    Without ``disks:`` the ``disk:`` mapping (or its defaults) is one disk
    named ``default``. Always returns at least one disk.
    """
    node = top.value("disks")
    if node is None:
        return (Disk(DEFAULT_DISK, disk),)
    if top.value("disk") is not None:
        reader.problem(
            node,
            "disks",
            "found both disk: and disks:, expected one of them",
            hint="move the disk: mapping into the disks: list and give it a name:",
        )
    if not isinstance(node, SequenceNode) or not node.value:
        reader.problem(node, "disks", f"found {describe(node)}, expected a list of named disks")
        return (Disk(DEFAULT_DISK, disk),)
    disks: list[Disk] = []
    claimed: dict[tuple[str, str], str] = {}  # (what, value) -> the disk that has it
    for i, item in enumerate(node.value):
        reader.spend(item)
        found = _one_disk(reader, item, f"disks[{i}]", build)
        if found is None:
            continue
        if _clash(reader, item, f"disks[{i}]", found, claimed):
            continue
        disks.append(found)
    return tuple(disks) or (Disk(DEFAULT_DISK, disk),)


def _one_disk(reader: Reader, item: Node, path: str, build: BuildDisk) -> Disk | None:
    if not isinstance(item, MappingNode):
        reader.problem(item, path, f"found {describe(item)}, expected a disk mapping with name:")
        return None
    sec = Section(reader, item, path)
    sec.check_unknown(("name", *yaml_keys(DiskConfig)))
    name = sec.require("name", reader.name)
    config = build(sec)
    if name is None or config is None:
        return None
    return Disk(name, config)


def _clash(
    reader: Reader, item: Node, path: str, disk: Disk, claimed: dict[tuple[str, str], str]
) -> bool:
    """Report what ``disk`` shares with an earlier disk; claim its own values."""
    owned = [
        ("name", "name", disk.name),
        ("mount.point", "mount point", str(disk.config.mount.point)),
    ]
    if disk.config.token is not None:
        owned.append(("token.hash_file", "token hash file", str(disk.config.token.hash_file)))
    if disk.config.luks is not None:
        owned.append(("luks.name", "LUKS mapping name", disk.config.luks.name))
    for key, what, value in owned:
        other = claimed.get((key, value))
        if other is not None:
            reader.problem(
                item,
                f"{path}.{key}",
                f"found {value!r}, the {what} of disk {other!r} too; expected each disk "
                f"to have its own {what}",
                hint="coldvault refuses disks that share a name, mount point, token hash "
                "file or LUKS mapping name",
            )
            return True
    for key, _what, value in owned:
        claimed[(key, value)] = disk.name
    return False


def disk_warnings(disks: tuple[Disk, ...]) -> tuple[str, ...]:
    """What validation warns about (once per load): a token on a disk without LUKS."""
    out = []
    for d in disks:
        if d.config.token is not None and d.config.luks is None:
            where = "the disk" if d.name == DEFAULT_DISK and len(disks) == 1 else f"disk {d.name}"
            out.append(
                f"{where} has a token but no LUKS layer: anyone who can read the disk can "
                "copy its token and make another disk pass for it"
            )
    return tuple(out)
