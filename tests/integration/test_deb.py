"""The Debian package: built with Debian's tooling, installed with apt, run, purged.

Needs root and the build tools (packaging/bootstrap --test installs them). The
installed command is called as /usr/bin/coldvault: the tests' own coldvault is
the checkout's venv, not the package.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import ROOT, require, require_programs, require_root

from coldvault import __version__

APT_ENV = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
# Debian tools only: the package must run on Debian's python3, not a venv's or pyenv's.
SYSTEM_ENV = {**APT_ENV, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
MAN_ENV = {**SYSTEM_ENV, "LC_ALL": "C.UTF-8", "MANWIDTH": "80", "MANROFFSEQ": "", "PAGER": "cat"}


def sh(*argv: str | Path, env: dict[str, str] = SYSTEM_ENV) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, check=False, env=env
    )


def is_installed(package: str) -> bool:
    done = sh("dpkg-query", "-W", "-f=${Status}", package)
    return done.returncode == 0 and "ok installed" in done.stdout


@pytest.fixture(scope="module")
def built_deb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Build the .deb out of tree (no root needed); removed afterwards."""
    require_programs("dpkg-buildpackage", "dh")
    out = tmp_path_factory.mktemp("deb")
    try:
        built = subprocess.run(
            [str(ROOT / "packaging/build-deb"), str(out)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert built.returncode == 0, built.stderr[-4000:]
        deb = Path(built.stdout.strip().splitlines()[-1])
        assert deb.name == f"coldvault_{__version__}_all.deb"
        yield deb
    finally:
        shutil.rmtree(out, ignore_errors=True)


@pytest.fixture(scope="module")
def installed_deb(built_deb: Path) -> Iterator[Path]:
    """apt-get install the built .deb, and purge it afterwards."""
    require_root()
    require_programs("apt-get")
    require(not is_installed("coldvault"), "a coldvault package is already installed here")
    try:
        done = sh(
            "apt-get", "install", "-y", "-q", "--no-install-recommends", built_deb, env=APT_ENV
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        yield built_deb
    finally:
        sh("apt-get", "purge", "-y", "-q", "coldvault", env=APT_ENV)
    assert not is_installed("coldvault")
    assert not Path("/etc/coldvault/config.yaml").exists()


def test_lintian_reports_no_error_or_warning(built_deb: Path) -> None:
    """`lintian -I -E --pedantic`: informational and pedantic tags may stay, E:/W: not."""
    require_programs("lintian")
    done = sh("lintian", "-I", "-E", "--pedantic", built_deb)
    tags = done.stdout.splitlines()
    bad = [line for line in tags if line.startswith(("E:", "W:"))]
    assert not bad, "\n".join(tags)
    # Exit 0 without E:/W: tags; 2 would mean lintian itself failed.
    assert done.returncode == 0, done.stdout + done.stderr


def test_man_page_and_completion_are_installed(installed_deb: Path) -> None:
    files = sh("dpkg", "-L", "coldvault").stdout.splitlines()
    assert "/usr/share/man/man1/coldvault.1.gz" in files
    assert "/usr/share/bash-completion/completions/coldvault" in files
    done = sh("man", "--warnings", "-E", "UTF-8", "-Tutf8", "-Z", "coldvault", env=MAN_ENV)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    rendered = sh("man", "coldvault", env=MAN_ENV).stdout
    assert "coldvault disk init" in rendered
    assert __version__ in rendered


def test_installed_command_reports_the_version(installed_deb: Path) -> None:
    done = sh("/usr/bin/coldvault", "--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"coldvault {__version__}"
    # Debian's interpreter runs it, not a venv's.
    assert Path("/usr/bin/coldvault").read_text().startswith("#!/usr/bin/python3")


def test_installed_example_config_validates(installed_deb: Path) -> None:
    done = sh("/usr/bin/coldvault", "config", "validate", "/etc/coldvault/config.yaml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "valid" in done.stdout
    # Debian 12 has no python3-blake3: the packaged example uses SHA-256 for parts.
    assert "sha256" in done.stdout
    assert "blake3" not in done.stdout


def test_config_is_a_conffile(installed_deb: Path) -> None:
    done = sh("dpkg-query", "-W", "-f=${Conffiles}", "coldvault")
    assert "/etc/coldvault/config.yaml" in done.stdout


def test_installed_unit_verifies_with_the_real_command(installed_deb: Path) -> None:
    unit = Path("/lib/systemd/system/coldvault.service")
    assert unit.read_text() == (ROOT / "systemd/coldvault.service").read_text()
    done = sh("systemd-analyze", "verify", unit)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "coldvault.service:" not in done.stdout + done.stderr


def test_catalog_and_dependencies_are_declared(installed_deb: Path) -> None:
    catalog = ROOT / "systemd/coldvault.catalog"
    if catalog.exists():
        installed = Path("/usr/lib/systemd/catalog/coldvault.catalog")
        assert installed.read_text() == catalog.read_text()
    fields = sh("dpkg-query", "-W", "-f=${Depends}\n${Recommends}", "coldvault").stdout
    depends, recommends = fields.split("\n")
    for dep in ("python3-yaml", "python3-psutil", "python3-sdnotify", "python3-schedule"):
        assert dep in depends
    assert "python3-prometheus-client" in depends
    for rec in ("btrfs-progs", "mdadm", "cryptsetup-bin", "lvm2", "apprise"):
        assert rec in recommends
    assert "blake3" not in depends
