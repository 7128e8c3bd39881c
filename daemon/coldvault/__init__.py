"""coldvault: unattended backups onto a hand-built, encrypted backup disk."""

__version__ = "0.1.0"
