"""docs/DEVELOPING.md stays true: every repository path it names exists."""

from __future__ import annotations

import re

from tests.conftest import ROOT

DOC = ROOT / "docs" / "DEVELOPING.md"
PACKAGE = ROOT / "daemon" / "coldvault"


def test_named_paths_exist() -> None:
    text = DOC.read_text()
    named = set(re.findall(r"`((?:daemon|tests|systemd|packaging|config|bench)/[\w/.-]+)", text))
    assert len(named) > 10
    # Paths are from the repository root, or (config/…, disk/…) from the package.
    named = {p for p in named if "/.work/" not in p}  # made by the VM harness when it runs
    missing = [p for p in sorted(named) if not ((ROOT / p).exists() or (PACKAGE / p).exists())]
    assert not missing


def test_module_map_covers_every_package() -> None:
    text = DOC.read_text()
    packages = [p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()]
    assert packages
    for name in packages:
        assert f"| `{name}/` |" in text, name
    assert "(../README.md)" in text
    assert "docs/DEVELOPING.md" in (ROOT / "README.md").read_text()
