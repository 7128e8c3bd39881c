"""Preparing backup disks: ``coldvault disk init`` and ``coldvault disk add-mirror``."""
