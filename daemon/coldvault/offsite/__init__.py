"""Offsite copies: each job's newest backup in a restic repository elsewhere."""
