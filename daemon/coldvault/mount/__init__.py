"""``coldvault mount``: browse an image snapshot read-only without restoring it.

A FUSE process serves the snapshot's parts as one read-only image file
(:mod:`~coldvault.mount.image`, :mod:`~coldvault.mount.fusefs`,
:mod:`~coldvault.mount.serve`); a read-only loop device and read-only mounts
expose the file systems inside (:mod:`~coldvault.mount.attach`). What was set up
is recorded (:mod:`~coldvault.mount.record`) so ``coldvault umount`` undoes it in
reverse (:mod:`~coldvault.mount.teardown`), also after the FUSE process died.
"""
