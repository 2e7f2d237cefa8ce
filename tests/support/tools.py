"""External tools some tests drive (Chromium, speech synthesisers). Where one is missing the
test is skipped with the command that installs it, except in CI (``CROSSMODAL_REQUIRE_TOOLS=1``,
set by ``.ci/run``), where a missing tool is a failure: nothing skips there."""

from __future__ import annotations

import os

import pytest


def require(available: bool, hint: str) -> None:
    if available:
        return
    if os.environ.get("CROSSMODAL_REQUIRE_TOOLS") == "1":
        pytest.fail(f"required in CI: {hint}")
    pytest.skip(hint)
