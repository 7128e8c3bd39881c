"""Notifications through Apprise (ntfy, Gotify, email, Matrix, ... by URL).

Each target of ``settings.notify`` gets the messages whose event its ``on:``
lists. Apprise's own socket timeouts are short (4 s connect, 4 s read by
default); a message is tried twice at most. A failure is a ``notify_failed``
event with the URL and any secret in the reason masked; nothing is raised.
Apprise is imported only when a message is sent (it loads ~100 plugins).
"""

from __future__ import annotations

import logging
from typing import Any

from coldvault.config.model import Config, NotifyTarget
from coldvault.events import Event, emit
from coldvault.monitor.messages import FAILURE, SUCCESS, Message
from coldvault.monitor.secrets import Masker, mask_url

log = logging.getLogger("coldvault.monitor.notify")
ATTEMPTS = 2


def notify(config: Config, message: Message, *, job: str | None = None) -> None:
    """Send ``message`` to every target listening for its event (never raises)."""
    targets = [t for t in config.settings.notify if message.event in t.on]
    if not targets:
        return
    try:
        import apprise
    except ImportError:
        for target in targets:
            _failed(
                target, message, "the apprise module is not installed (apt install apprise)", job
            )
        return
    for target in targets:
        error = ""
        for _attempt in range(ATTEMPTS):
            error = _deliver(apprise, target.url, message)
            if not error:
                break
        if error:
            _failed(target, message, error, job)


def _deliver(apprise: Any, url: str, message: Message) -> str:
    """Send once; the reason it failed, or "" when delivered."""
    sender = apprise.Apprise()
    if not sender.add(url):
        return "not a URL Apprise knows (check the scheme and the service's URL format)"
    kind = {
        FAILURE: apprise.NotifyType.FAILURE,
        SUCCESS: apprise.NotifyType.SUCCESS,
    }.get(message.kind, apprise.NotifyType.INFO)
    with apprise.LogCapture(level=logging.WARNING) as captured:
        delivered = sender.notify(body=message.body, title=message.title, notify_type=kind)
        logged = captured.getvalue().strip()
    if delivered:
        return ""
    return logged.splitlines()[-1] if logged else "Apprise reported a failure"


def _failed(target: NotifyTarget, message: Message, error: str, job: str | None) -> None:
    masked = mask_url(target.url)
    reason = Masker([target.url])(error)
    emit(
        log,
        Event.NOTIFY_FAILED,
        f"{message.event} notification to {masked} failed: {reason}",
        job=job,
        level=logging.WARNING,
        channel="notification",
        target=masked,
        error=reason,
    )
