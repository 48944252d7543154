"""Where things live: the data folders that ship with eventlm (tokenizer presets, model-card templates), the
user's cache folder; and the host's CPU model (names cached measurements and benchmark tables)."""

import functools
import os
import platform
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """The folder `name` ("tokenizers" | "model_cards"): inside an installed wheel it lies at
    eventlm/_data/<name>; in a source checkout (editable install) at the repository's top level."""
    for candidate in (_PACKAGE / "_data" / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"eventlm's data folder {name!r} is missing from the installation ({_PACKAGE})")


def default_cache_dir() -> Path:
    """$EVENTLM_CACHE, else ~/.cache/eventlm."""
    return Path(os.environ.get("EVENTLM_CACHE", Path.home() / ".cache" / "eventlm"))


def available_cpus() -> int:
    """The CPUs this process may run on now (its affinity mask where the OS has one, else the machine's count;
    not cached: a benchmark may pin itself to one core after this was first asked)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@functools.lru_cache(maxsize=None)
def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo's "model name" on Linux, else what platform says)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
