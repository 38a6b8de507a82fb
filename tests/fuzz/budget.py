"""Hypothesis budgets for the fuzzers.

``ci`` (the default) keeps every fuzzer to a bounded number of examples
so that the whole of ``tests/fuzz`` runs in a minute or two on a 2-core
machine; ``long`` is for a deliberate fuzzing session::

    FENCEKIT_FUZZ_PROFILE=long .venv/bin/python -m pytest tests/fuzz

The profiles are applied per test (``@FUZZ``), never loaded globally, so
other hypothesis tests keep their own settings.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_COMMON = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow],
    "derandomize": False,
    "print_blob": True,
}

settings.register_profile("fencekit-ci", max_examples=150, **_COMMON)
settings.register_profile("fencekit-long", max_examples=5000, **_COMMON)

PROFILE = "fencekit-" + os.environ.get("FENCEKIT_FUZZ_PROFILE", "ci")
FUZZ = settings(settings.get_profile(PROFILE))
# Fuzzers that run a whole program per example get a tenth of the budget.
FUZZ_SLOW = settings(
    FUZZ,
    max_examples=max(10, settings.get_profile(PROFILE).max_examples // 10),
)
