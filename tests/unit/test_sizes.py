"""Size and duration forms accepted in the configuration."""

from __future__ import annotations

from datetime import time, timedelta

import pytest

from coldvault.config.durations import format_duration, parse_duration, parse_time_of_day
from coldvault.config.sizes import format_size, parse_size


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("512", 512),
        ("0", 0),
        (" 4096 ", 4096),
        ("+8", 8),
        ("0x1000", 4096),
        ("0XfF", 255),
        ("3c", 3),
        ("3w", 6),
        ("2b", 1024),
        ("1B", 512),
        ("1k", 1024),
        ("1K", 1024),
        ("100m", 100 << 20),
        ("100M", 100 << 20),
        ("1g", 1 << 30),
        ("1G", 1 << 30),
        ("2t", 2 << 40),
        ("2T", 2 << 40),
        ("4KiB", 4096),
        ("4kib", 4096),
        ("3MiB", 3 << 20),
        ("1GiB", 1 << 30),
        ("1TiB", 1 << 40),
        ("1kB", 1000),
        ("1KB", 1000),
        ("5MB", 5_000_000),
        ("2GB", 2_000_000_000),
        ("1TB", 10**12),
        ("10 M", 10 << 20),
        (4096, 4096),
    ],
)
def test_parse_size(text: str | int, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("-1", "not negative"),
        ("-5M", "not negative"),
        ("1.5M", "no fractions"),
        ("0.5", "no fractions"),
        (",5k", "no fractions"),
        ("lots", "expected a whole number of bytes"),
        ("", "expected a whole number of bytes"),
        ("M", "expected a whole number of bytes"),
        ("12 parsecs", "unknown unit 'parsecs'"),
        ("1e3", "expected a whole number of bytes"),
        ("0x", "unknown unit 'x'"),
        ("0xZZ", "unknown unit"),
        ("1M1", "expected a whole number of bytes"),
    ],
)
def test_parse_size_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_size(text)


def test_parse_size_rejects_negative_int_and_bool() -> None:
    with pytest.raises(ValueError, match="not negative"):
        parse_size(-1)
    with pytest.raises(ValueError):
        parse_size(True)


@pytest.mark.parametrize("n", [1, 512, 1000, 4096, 100 << 20, 3 << 30, 5 << 40, 1536])
def test_format_size_round_trips(n: int) -> None:
    assert parse_size(format_size(n)) == n


def test_format_size_is_short() -> None:
    assert format_size(100 << 20) == "100M"
    assert format_size(1536) == "1536"
    assert format_size(0) == "0"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("15m", 900),
        ("6h", 21600),
        ("1d", 86400),
        ("1w", 604800),
        ("1h30m", 5400),
        ("1H 30M", 5400),
        ("2d12h", 216000),
    ],
)
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)
    assert parse_duration(format_duration(timedelta(seconds=seconds))) == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("5", "with units"),
        ("", "with units"),
        ("1y", "with units"),
        ("-1d", "positive"),
        ("0s", "longer than zero"),
        ("1.5h", "with units"),
        ("soon", "with units"),
    ],
)
def test_parse_duration_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_duration(text)


def test_time_of_day() -> None:
    assert parse_time_of_day("03:00") == time(3, 0)
    assert parse_time_of_day("3:05") == time(3, 5)
    assert parse_time_of_day("23:59") == time(23, 59)
    for bad in ("24:00", "12:60", "noon", "12", "1:2", "12:00:00"):
        with pytest.raises(ValueError, match="HH:MM"):
            parse_time_of_day(bad)
