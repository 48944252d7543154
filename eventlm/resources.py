"""Where the data folders that ship with eventlm live (tokenizer presets, model-card templates)."""

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """The folder `name` ("tokenizers" | "model_cards"): inside an installed wheel it lies at
    eventlm/_data/<name>; in a source checkout (editable install) at the repository's top level."""
    for candidate in (_PACKAGE / "_data" / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"eventlm's data folder {name!r} is missing from the installation ({_PACKAGE})")
