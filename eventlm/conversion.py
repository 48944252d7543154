"""What every converter of original checkpoints shares (EventSSM's, the Spike-Driven Transformer's):
the shapes the target classifier expects, a digest of the converted weights for the card, and the atomic
write (and optional push) of the finished folder."""

from __future__ import annotations

import functools
import hashlib
import logging
from pathlib import Path
from typing import Optional

import numpy as np

logger = logging.getLogger(__name__)


def expected_variable_shapes(config) -> dict:
    """{eventlm key: shape} of the sequence classifier of `config`, computed without allocating."""
    import jax

    from .auto import AutoModelForSequenceClassification
    from .modeling_flax_utils import flatten_variables

    model = AutoModelForSequenceClassification.from_config(config, _do_init=False)
    shapes = jax.eval_shape(functools.partial(model.init_weights, input_shape=(1, 16)), jax.random.PRNGKey(0))
    return {k: tuple(v.shape) for k, v in flatten_variables(shapes).items()}


def params_digest(variables: dict) -> str:
    """SHA-256 over the converted tensors (sorted keys, float32 bytes): identifies the weights in the card."""
    from .modeling_flax_utils import flatten_variables

    h = hashlib.sha256()
    for key, value in sorted(flatten_variables(variables).items()):
        h.update(key.encode())
        h.update(np.ascontiguousarray(value, np.float32).tobytes())
    return h.hexdigest()


def write_converted_model(config, variables: dict, tokenizer, card, output_dir, *, push_to_hub: bool = False,
                          hub_model_id: Optional[str] = None, token=None, private=None,
                          commit_message: str = "Convert an original checkpoint") -> Path:
    """The sequence classifier of `config` with `variables` (params, optional batch_stats), its tokenizer and
    card, written to `output_dir` atomically; then optionally the whole folder pushed to the Hub."""
    from .auto import AutoModelForSequenceClassification
    from .modeling_flax_utils import atomic_write_folder

    model = AutoModelForSequenceClassification.from_config(config, _do_init=False)

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp, params=variables["params"], batch_stats=variables.get("batch_stats"),
                              model_card=card)
        tokenizer.save_pretrained(tmp)

    folder = atomic_write_folder(output_dir, write)
    if push_to_hub:  # the whole folder (config, weights, tokenizer, card), as save_pretrained(push_to_hub=True)
        model._upload(folder, hub_model_id or folder.resolve().name, token=token, private=private,
                      commit_message=commit_message)
    return folder


def num_parameters(variables: dict) -> int:
    """Number of trainable parameters of converted variables (batch-norm statistics not counted)."""
    from .modeling_flax_utils import flatten_variables

    return int(sum(np.asarray(v).size for v in flatten_variables({"params": variables["params"]}).values()))
