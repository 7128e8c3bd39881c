"""Masking the secrets that ping and notification URLs carry, for logs and ``config validate``.

A ping URL's path is its key (``https://hc-ping.com/<uuid>``), an Apprise URL
carries tokens in its user, password, host, path or query
(``tgram://<bot-token>/<chat>``). What stays readable is the scheme and a host
that looks like a host name; everything else becomes ``***``, as Ansible
masks passwords in the commands it logs.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, unquote, urlsplit

MASK = "***"
_MIN_SECRET = 4  # shorter parts (``/``, ``a``) are not worth hiding and would mangle text


def _shown_host(host: str) -> bool:
    """Whether ``host`` reads as a host name or address, not a token."""
    if host == "localhost":
        return True
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return bool(re.fullmatch(r"([a-z0-9-]+\.)+[a-z]{2,}", host, re.IGNORECASE))


def mask_url(url: str) -> str:
    """``https://hc-ping.com/***``: the scheme and a real host name, nothing secret."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    if not parts.scheme or "://" not in url:
        return MASK
    try:
        host, port = parts.hostname or "", parts.port
    except ValueError:  # ``bot:token`` where a port would be: all of it is secret
        host, port = "", None
    shown = host if _shown_host(host) else MASK
    if port is not None:
        shown += f":{port}"
    user = f"{MASK}@" if parts.username or parts.password else ""
    rest = f"/{MASK}" if parts.path.strip("/") or parts.query or parts.fragment else "/"
    return f"{parts.scheme}://{user}{shown}{rest}"


def secret_parts(url: str) -> set[str]:
    """The pieces of ``url`` that may be secret (to find them in any text)."""
    found = {url}
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        return found
    found.add(parts.netloc.rsplit("@", 1)[-1] if not _shown_host(host) else "")
    found.update(p for p in (parts.username, parts.password) if p)
    if host and not _shown_host(host):
        found.add(host)
    found.update(seg for seg in parts.path.split("/") if seg)
    found.update(unquote(seg) for seg in parts.path.split("/") if seg)
    found.update(v for _, v in parse_qsl(parts.query) if v)
    if parts.path.strip("/"):
        found.add(parts.path)
    return {p for p in found if len(p) >= _MIN_SECRET}


class Masker:
    """Replaces every secret of some URLs in text (an error message, a log line)."""

    def __init__(self, urls: Iterable[str]) -> None:
        secrets: set[str] = set()
        self._urls = {url: mask_url(url) for url in urls}
        for url in self._urls:
            secrets |= secret_parts(url)
        self._parts = sorted(secrets, key=len, reverse=True)  # longest first

    def __call__(self, text: str) -> str:
        """``text`` with each URL masked whole and each secret part as ``***``."""
        for url, masked in self._urls.items():
            text = text.replace(url, masked)
        for part in self._parts:
            text = text.replace(part, MASK)
        return text
