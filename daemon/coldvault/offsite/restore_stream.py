"""Write an image snapshot from a tar stream of its folder (``restic dump``) to a device or file.

The stream comes from the offsite repository and is untrusted input: the manifest is
read with a size limit and validated like one on the backup disk, it must be complete
and know every part, and each part is hashed while it is written and compared with
its record. Only regular members named like parts are accepted, in ascending order.
Nothing is staged on disk: each member is copied straight to its offset.
"""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path
from typing import IO

from coldvault.errors import IntegrityError
from coldvault.jobs.image import manifest as manifest_mod
from coldvault.jobs.image.destination import open_destination, write_failed
from coldvault.jobs.image.manifest import Manifest, PartRecord
from coldvault.jobs.image.parts import part_name
from coldvault.jobs.image.reader import new_hasher
from coldvault.system.cancel import CancelToken

_CHUNK = 1 << 20


def restore_tar_stream(stream: IO[bytes], origin: str, dest: Path, cancel: CancelToken) -> Manifest:
    """Write the image held in the tar ``stream`` (named ``origin`` in messages) to ``dest``."""
    with tarfile.open(fileobj=stream, mode="r|") as tar:
        members = iter(tar)
        first = next(members, None)
        if first is None or Path(first.name).name != manifest_mod.MANIFEST_NAME:
            raise IntegrityError(f"{origin} does not start with a coldvault manifest")
        manifest = _manifest(tar, first, origin)
        fd, extend = open_destination(dest, manifest.source_size)
        try:
            expected = 0
            for member in members:
                cancel.check()
                expected = _write_member(tar, member, manifest, expected, fd, origin)
            if expected != manifest.count:
                raise IntegrityError(
                    f"{origin} holds {expected} of the {manifest.count} parts its manifest lists"
                )
            if extend:
                os.ftruncate(fd, manifest.source_size)
            os.fsync(fd)
        except OSError as exc:
            raise write_failed(dest, exc) from None
        finally:
            os.close(fd)
    return manifest


def _manifest(tar: tarfile.TarFile, member: tarfile.TarInfo, origin: str) -> Manifest:
    where = Path(origin) / manifest_mod.MANIFEST_NAME
    if not member.isreg() or member.size > manifest_mod.MAX_BYTES:
        raise manifest_mod.ManifestDamaged(where, "not a regular file of a manifest's size")
    data = tar.extractfile(member)
    assert data is not None  # a regular member always has data
    try:
        manifest = manifest_mod.validate(json.loads(data.read()), where)
    except (ValueError, RecursionError) as exc:
        raise manifest_mod.ManifestDamaged(where, f"unreadable ({exc})") from None
    if not manifest.complete or len(manifest.parts) != manifest.count:
        raise manifest_mod.ManifestDamaged(where, "it does not describe a complete snapshot")
    if any(record is None for record in manifest.parts):
        raise manifest_mod.ManifestDamaged(where, "it has parts it does not know")
    return manifest


def _write_member(
    tar: tarfile.TarFile,
    member: tarfile.TarInfo,
    manifest: Manifest,
    index: int,
    fd: int,
    origin: str,
) -> int:
    name = Path(member.name).name
    path = f"{origin}/{name}"
    if index >= manifest.count or name != part_name(index) or not member.isreg():
        raise IntegrityError(f"{path} is not the part the manifest expects ({part_name(index)})")
    record = manifest.parts[index]
    assert record is not None  # _manifest refused unknown parts
    start, length = index * manifest.part_size, manifest.span(index)
    if member.size == 0:
        if not record.zero:
            raise IntegrityError(f"{path} is empty but its manifest says it holds data")
        _write_zeros(fd, start, length)
        return index + 1
    if member.size != length:
        raise IntegrityError(f"{path} has {member.size} bytes, expected {length}")
    data = tar.extractfile(member)
    assert data is not None
    _copy_checked(data, fd, start, length, record, manifest.algorithm, path)
    return index + 1


def _copy_checked(
    data: IO[bytes], fd: int, start: int, length: int, record: PartRecord, algo: str, path: str
) -> None:
    hasher = new_hasher(algo)
    offset = 0
    while offset < length:
        chunk = data.read(min(_CHUNK, length - offset))
        if not chunk:
            raise IntegrityError(f"{path} ended at byte {offset}, expected {length}")
        if record.zero and chunk.count(0) != len(chunk):
            raise IntegrityError(f"{path} is corrupt: it should hold only zero bytes")
        hasher.update(chunk)
        _pwrite_all(fd, memoryview(chunk), start + offset)
        offset += len(chunk)
    if not record.zero and hasher.hexdigest() != record.hash:
        raise IntegrityError(
            f"{path} does not match its manifest ({algo} hash differs); the destination "
            f"holds unverified data from byte {start}",
            hint="restore another offsite snapshot (`coldvault offsite list NAME JOB`)",
        )


def _write_zeros(fd: int, start: int, length: int) -> None:
    zero = memoryview(bytes(min(_CHUNK, length)))
    done = 0
    while done < length:
        step = min(len(zero), length - done)
        _pwrite_all(fd, zero[:step], start + done)
        done += step


def _pwrite_all(fd: int, view: memoryview, offset: int) -> None:
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n
