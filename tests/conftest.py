import os
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pytest

REALDATA = Path(__file__).resolve().parents[1].parent / "shared" / "realdata"


@pytest.fixture(scope="session")
def realdata():
    """../shared/realdata beside the checkout; tests that need it skip on a user's fresh clone."""
    if not REALDATA.is_dir():
        pytest.skip(f"real recordings not found at {REALDATA} (they live in ../shared/realdata beside the repo)")
    return REALDATA
