"""Logging: console output for humans, structured journal entries under systemd."""

from coldvault.log.setup import setup_logging

__all__ = ["setup_logging"]
