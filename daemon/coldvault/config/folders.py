"""Where jobs keep their backups: job folders never overlap, btrfs sources never share one.

A job's retention deletes ``snapshot-*`` folders in its own folder, so a job
folder inside another's (``a/snapshot-inprogress``) would lose its backups.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from yaml.nodes import Node, SequenceNode

from coldvault.config.converters import Reader
from coldvault.config.model import DiskConfig, Job, TokenConfig


def distinct_source_names(reader: Reader, sources: tuple[Path, ...], node: Node, path: str) -> bool:
    """Each source is stored in a folder named after its last component: no sharing."""
    from coldvault.jobs.btrfs.snapshots import source_name

    items = node.value if isinstance(node, SequenceNode) else [node]
    if len(items) != len(sources):  # some were invalid (reported): positions unknown
        return False
    seen: dict[str, Path] = {}
    fits = True
    for i, (source, item) in enumerate(zip(sources, items, strict=True)):
        folder = source_name(source)
        if folder in seen:
            reader.problem(
                item,
                f"{path}[{i}]",
                f"found {str(source)!r}, stored in the folder {folder!r} like "
                f"{str(seen[folder])!r}; expected sources whose last names differ",
                hint="split them into two jobs, or back up their common parent subvolume",
            )
            fits = False
        seen.setdefault(folder, source)
    return fits


class JobFolders:
    """The job folders claimed so far: none may equal, contain or lie inside another.

    A job's retention deletes ``snapshot-*`` folders in its own folder: a job
    inside another's folder would lose its backups to it.
    """

    def __init__(self, reader: Reader, disks: Sequence[DiskConfig]) -> None:
        self.reader = reader
        self.owner: dict[tuple[str, ...], str] = {}  # a job folder -> its job
        self.above: dict[tuple[str, ...], str] = {}  # every folder above one -> a job
        tokens = {d.token.file for d in disks if d.token is not None} | {TokenConfig.file}
        self.reserved = {Path(name).parts for name in tokens}

    def claim(self, job: Job, item: Node, path: str) -> bool:
        """Record ``job``'s folder; False (and a problem) when it overlaps another."""
        parts = Path(job.target).parts
        clash = self.clash(parts)
        if clash is not None:
            self.reader.problem(
                item,
                path,
                f"found {job.target!r}, {clash}; expected each job to have its own target folder",
            )
            return False
        self.owner[parts] = job.name
        for i in range(1, len(parts)):
            self.above.setdefault(parts[:i], job.name)
        return True

    def clash(self, parts: tuple[str, ...]) -> str | None:
        for name in self.reserved:
            if parts[: len(name)] == name or name[: len(parts)] == parts:
                return f"which is or holds the disk's token file {'/'.join(name)!r}"
        if parts in self.owner:
            return f"already the folder of job {self.owner[parts]!r}"
        for i in range(1, len(parts)):
            if parts[:i] in self.owner:
                other = self.owner[parts[:i]]
                return f"inside the folder {'/'.join(parts[:i])!r} of job {other!r}"
        if parts in self.above:
            return f"which holds the folder of job {self.above[parts]!r}"
        return None
