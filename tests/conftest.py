import os
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# implementation="auto" runs the CPU kernel where it covers the model (as before issue 14) instead of timing both
# steps once per model shape into ~/.cache/eventlm; test_auto_times_both_steps_once_and_keeps_the_choice unsets it
os.environ.setdefault("EVENTLM_STREAM_IMPLEMENTATION", "cpu-kernel")

import pytest

REALDATA = Path(__file__).resolve().parents[1].parent / "shared" / "realdata"


@pytest.fixture(scope="session")
def realdata():
    """../shared/realdata beside the checkout; tests that need it skip on a user's fresh clone."""
    if not REALDATA.is_dir():
        pytest.skip(f"real recordings not found at {REALDATA} (they live in ../shared/realdata beside the repo)")
    return REALDATA
