"""Dead-man's-switch pings: ``URL/start``, ``URL`` and ``URL/fail`` (healthchecks.io), or an
Uptime Kuma push URL (``?status=up|down&msg=…``).

A ping has a short timeout and is tried twice at most (not again after a
timeout: a server that does not answer costs one timeout). A failure is a
``notify_failed`` event with the URL masked; it never touches the backup.
"""

from __future__ import annotations

import logging
import urllib.error
import urllib.request
from collections.abc import Sequence
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from coldvault.config.model import Config, Job
from coldvault.events import Event, emit
from coldvault.monitor.secrets import Masker, mask_url

log = logging.getLogger("coldvault.monitor.pings")
TIMEOUT_SECONDS = 10.0
BODY_LIMIT = 100_000  # bytes of log lines sent with a ping (healthchecks.io keeps 100 kB)
KUMA_MSG_LIMIT = 250
START, SUCCESS, FAIL = "start", "success", "fail"


def ping_url(config: Config, job: Job) -> str | None:
    """The job's own ``ping:``, else ``settings.ping`` with ``{job}`` replaced; None: no ping."""
    if job.ping is not None:
        return job.ping
    if config.settings.ping is None:
        return None
    return config.settings.ping.replace("{job}", quote(job.name, safe=""))


def is_kuma(url: str) -> bool:
    """An Uptime Kuma push URL: it carries ``status=`` in its query."""
    return any(k == "status" for k, _ in parse_qsl(urlsplit(url).query, keep_blank_values=True))


def request_for(url: str, kind: str, lines: Sequence[str]) -> urllib.request.Request | None:
    """The HTTP request of one ping (None: this kind is not sent to this kind of URL)."""
    parts = urlsplit(url)
    if is_kuma(url):
        if kind == START:  # Uptime Kuma has no "started": its heartbeat interval is the alarm
            return None
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        query["status"] = "up" if kind == SUCCESS else "down"
        query["msg"] = (lines[-1] if lines else kind)[:KUMA_MSG_LIMIT]
        return urllib.request.Request(urlunsplit(parts._replace(query=urlencode(query))))
    path = parts.path.rstrip("/")
    if kind != SUCCESS:
        path += f"/{kind}"
    body = "\n".join(lines).encode()[-BODY_LIMIT:]  # the last lines matter most
    return urllib.request.Request(
        urlunsplit(parts._replace(path=path)),
        data=body,
        method="POST",
        headers={"Content-Type": "text/plain; charset=utf-8"},
    )


def send_ping(url: str, kind: str, lines: Sequence[str] = (), *, job: str) -> bool:
    """Send one ping; False (and a ``notify_failed`` event) when it could not be delivered."""
    request = request_for(url, kind, lines)
    if request is None:
        return True
    error = ""
    for _attempt in range(2):
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
                response.read(1024)
            return True
        except urllib.error.HTTPError as exc:
            error = f"HTTP {exc.code} {exc.reason}"
            if exc.code < 500:  # the URL is wrong: asking again gets the same answer
                break
        except TimeoutError:
            error = f"no answer within {TIMEOUT_SECONDS:.0f} s"
            break
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            if isinstance(reason, TimeoutError):
                error = f"no answer within {TIMEOUT_SECONDS:.0f} s"
                break
            error = str(reason)
    masked = mask_url(url)
    emit(
        log,
        Event.NOTIFY_FAILED,
        f"{job}: {kind} ping to {masked} failed: {Masker([url])(error)}",
        job=job,
        level=logging.WARNING,
        channel="ping",
        target=masked,
        error=Masker([url])(error),
    )
    return False


def ping_job(config: Config, job: Job, kind: str, lines: Sequence[str] = ()) -> None:
    """Ping the job's URL if it has one (never raises)."""
    url = ping_url(config, job)
    if url is not None:
        send_ping(url, kind, lines, job=job.name)
