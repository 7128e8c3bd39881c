"""Byte sizes as people write them: ``512``, ``0x1000``, ``100M``, ``4KiB``, ``1GB``.

The single-letter suffixes follow ``dd``: ``c`` = 1, ``w`` = 2, ``b`` = 512,
``k``/``m``/``g``/``t`` (either case) are binary (KiB, MiB, GiB, TiB). The
explicit forms ``KiB``/``MiB``/``GiB``/``TiB`` are binary too, while
``kB``/``MB``/``GB``/``TB`` are decimal (powers of 1000).
"""

from __future__ import annotations

import re

_UNITS: dict[str, int] = {
    "": 1,
    "c": 1,
    "w": 2,
    "b": 512,
    "k": 1 << 10,
    "m": 1 << 20,
    "g": 1 << 30,
    "t": 1 << 40,
    "kib": 1 << 10,
    "mib": 1 << 20,
    "gib": 1 << 30,
    "tib": 1 << 40,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
}

_SIZE = re.compile(r"(?P<num>\d+)\s*(?P<unit>[A-Za-z]*)")
_HEX = re.compile(r"0[xX](?P<hex>[0-9A-Fa-f]+)")

_MAX_DIGITS = 24  # 10**24 bytes is far above any bound the configuration allows

SIZE_FORMS = (
    "a whole number of bytes with an optional unit: 4096, 0x1000, 512b, 64k, 100M, 1G, 4KiB, 1GB"
)


def _unit_factor(unit: str) -> int | None:
    # Case only matters nowhere: "B" alone is dd's 512-byte block, "KB" is decimal like "kB".
    return _UNITS.get(unit.lower())


def parse_size(text: str | int) -> int:
    """The number of bytes ``text`` stands for.

    Raises ValueError with a message meant for the user for negatives,
    fractions, unknown units and anything else that is not a size.
    """
    if isinstance(text, bool):
        raise ValueError(f"found {text!r}, expected a size: {SIZE_FORMS}")
    if isinstance(text, int):
        if text < 0:
            raise ValueError(f"found {text}, expected a size that is not negative")
        return text
    raw = text.strip()
    if raw.startswith("-"):
        raise ValueError(f"found {_shown(text)}, expected a size that is not negative")
    if raw.startswith("+"):
        raw = raw[1:]
    hex_match = _HEX.fullmatch(raw)
    if hex_match:
        if len(hex_match["hex"].lstrip("0")) > _MAX_DIGITS:
            raise ValueError(
                f"found {_shown(text)}, expected a size of at most {_MAX_DIGITS} digits"
            )
        return int(hex_match["hex"], 16)
    if re.fullmatch(r"\d*[.,]\d*\s*[A-Za-z]*", raw) and re.search(r"\d", raw):
        raise ValueError(f"found {_shown(text)}, expected a whole number of bytes (no fractions)")
    match = _SIZE.fullmatch(raw)
    if not match:
        raise ValueError(f"found {_shown(text)}, expected {SIZE_FORMS}")
    factor = _unit_factor(match["unit"])
    if factor is None:
        raise ValueError(
            f"found {_shown(text)}: unknown unit {match['unit']!r}, expected one of "
            "c, w, b, k, m, g, t, KiB, MiB, GiB, TiB, kB, MB, GB, TB"
        )
    if len(match["num"].lstrip("0")) > _MAX_DIGITS:
        raise ValueError(f"found {_shown(text)}, expected a size of at most {_MAX_DIGITS} digits")
    return int(match["num"]) * factor


def _shown(text: str) -> str:
    return repr(text if len(text) <= 60 else text[:57] + "...")


def format_size(n: int) -> str:
    """The shortest exact binary form: ``100M``, ``4K``, ``1536``."""
    for suffix, factor in (("T", 1 << 40), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if n and n % factor == 0:
            return f"{n // factor}{suffix}"
    return str(n)
