"""Monitoring: dead-man's-switch pings, Apprise notifications, Prometheus metrics.

Nothing here is ever fatal to a backup: every failure is logged as a
``notify_failed`` event with its secrets masked (:mod:`.secrets`).
"""
