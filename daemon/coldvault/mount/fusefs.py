"""The FUSE file system: one read-only folder holding one read-only image file.

pyfuse3 runs the handlers on a trio event loop. Reads whose parts are already
checked are answered inline (a ``pread`` from the page cache); a read that must
first check a part (hash a whole part) runs in a worker thread, so other requests
are not held up meanwhile.
"""

from __future__ import annotations

import errno
import os
import stat
import time

import pyfuse3
import trio

from coldvault.mount.image import VirtualImage

# Debian 12's pyfuse3 (3.2.1) has no InodeT/ModeT/... at run time: plain ints and bytes.
FILE_INODE = pyfuse3.ROOT_INODE + 1
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_TRUNC | os.O_CREAT


class ImageFS(pyfuse3.Operations):
    """``/NAME``: the virtual image, read-only."""

    def __init__(self, image: VirtualImage, name: str) -> None:
        super().__init__()
        self.image = image
        self.name = name.encode()
        self.mtime_ns = time.time_ns()
        self.reads = 0
        self.bytes_read = 0

    def _attrs(self, inode: pyfuse3.InodeT) -> pyfuse3.EntryAttributes:
        attrs = pyfuse3.EntryAttributes()
        attrs.st_ino = inode
        attrs.st_uid, attrs.st_gid = os.getuid(), os.getgid()
        attrs.st_atime_ns = attrs.st_mtime_ns = attrs.st_ctime_ns = self.mtime_ns
        attrs.entry_timeout = attrs.attr_timeout = 3600
        attrs.st_blksize = 1 << 20
        if inode == pyfuse3.ROOT_INODE:
            attrs.st_mode = stat.S_IFDIR | 0o555
            attrs.st_nlink = 2
        elif inode == FILE_INODE:
            attrs.st_mode = stat.S_IFREG | 0o444
            attrs.st_nlink = 1
            attrs.st_size = self.image.size
            attrs.st_blocks = -(-self.image.size // 512)
        else:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return attrs

    async def getattr(
        self, inode: pyfuse3.InodeT, ctx: pyfuse3.RequestContext | None = None
    ) -> pyfuse3.EntryAttributes:
        """Attributes of the folder or the image."""
        return self._attrs(inode)

    async def lookup(
        self,
        parent_inode: pyfuse3.InodeT,
        name: pyfuse3.FileNameT,
        ctx: pyfuse3.RequestContext | None = None,
    ) -> pyfuse3.EntryAttributes:
        """Only the image's name exists."""
        if parent_inode != pyfuse3.ROOT_INODE or name != self.name:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return self._attrs(FILE_INODE)

    async def opendir(
        self, inode: pyfuse3.InodeT, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.FileHandleT:
        """The root is the only folder."""
        if inode != pyfuse3.ROOT_INODE:
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        return inode

    async def readdir(
        self, fh: pyfuse3.FileHandleT, start_id: int, token: pyfuse3.ReaddirToken
    ) -> None:
        """One entry: the image."""
        if start_id == 0:
            pyfuse3.readdir_reply(token, self.name, self._attrs(FILE_INODE), 1)

    async def open(
        self, inode: pyfuse3.InodeT, flags: int, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.FileInfo:
        """Open the image for reading; any write access is refused."""
        if inode != FILE_INODE:
            raise pyfuse3.FUSEError(errno.EISDIR if inode == pyfuse3.ROOT_INODE else errno.ENOENT)
        if flags & _WRITE_FLAGS:
            raise pyfuse3.FUSEError(errno.EROFS)
        # keep_cache: the content never changes, so the page cache stays valid across opens.
        return pyfuse3.FileInfo(fh=inode, keep_cache=True)

    async def read(self, fh: pyfuse3.FileHandleT, off: int, size: int) -> bytes:
        """Bytes of the image; EIO where a part failed its check."""
        self.reads += 1
        self.bytes_read += size
        try:
            if self.image.ready(off, size):
                return self.image.read(off, size)
            return await trio.to_thread.run_sync(self.image.read, off, size)
        except OSError as exc:
            raise pyfuse3.FUSEError(exc.errno or errno.EIO) from None

    async def statfs(self, ctx: pyfuse3.RequestContext) -> pyfuse3.StatvfsData:
        """A full, read-only file system of the image's size."""
        data = pyfuse3.StatvfsData()
        data.f_bsize = data.f_frsize = 4096
        data.f_blocks = -(-self.image.size // 4096)
        data.f_files = 2
        data.f_namemax = 255
        return data
