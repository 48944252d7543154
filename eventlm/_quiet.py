"""Import transformers without its "PyTorch was not found" advisory (eventlm never needs torch)."""

import os
import sys


def import_transformers_quietly():
    """Import transformers once, with its advisory warnings off only for the duration of the import."""
    if "transformers" in sys.modules:
        return sys.modules["transformers"]
    previous = os.environ.get("TRANSFORMERS_NO_ADVISORY_WARNINGS")
    os.environ["TRANSFORMERS_NO_ADVISORY_WARNINGS"] = "1"
    try:
        import transformers
    finally:
        if previous is None:
            del os.environ["TRANSFORMERS_NO_ADVISORY_WARNINGS"]
        else:
            os.environ["TRANSFORMERS_NO_ADVISORY_WARNINGS"] = previous
    return transformers
