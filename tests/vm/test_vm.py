"""One host test per guest scenario: each asserts its own result from the single guest run."""

from __future__ import annotations

import pytest

from tests.vm import harness

pytestmark = pytest.mark.vm


@pytest.mark.parametrize("scenario", harness.scenarios())
def test_guest_scenario(scenario: str, guest_run: harness.GuestRun) -> None:
    """The guest ran ``scenario`` and it passed (not run, skipped or failed is a failure)."""
    results = guest_run.results.get(scenario)
    if not results:
        pytest.fail(
            f"guest scenario {scenario} did not run (guest exit {guest_run.returncode}, "
            f"{guest_run.seconds:.0f}s)\n{guest_run.console[-6000:]}",
            pytrace=False,
        )
    bad = [r for r in results if r.outcome != "passed"]
    # A parametrized scenario reports one "call" per case: all must have passed.
    assert not bad, f"{scenario}: " + "\n".join(f"{r.outcome}: {r.message}" for r in bad)


def test_guest_found_scenarios() -> None:
    """The scenario list is read from tests/vm/guest and is not empty."""
    assert len(harness.scenarios()) > 0
