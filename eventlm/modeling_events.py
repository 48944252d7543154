"""What every event model shares (the event-model contract); a backbone supplies the rest.

Head constants are defined here once and read by the full forward, both streaming steps and generation.
"""

from __future__ import annotations

# The next-event head's log-normal gap scales log σ are clipped to this range in every path that computes
# them (full forward, training loss, streaming, generation): one distribution, trained and sampled.
GAP_LOG_SCALE_RANGE = (-12.0, 5.0)

# The variables subtree of each task's head (shared by every backbone): what a saved model's weights hold.
HEAD_NAMES = {"classification": "classifier", "next-event": "next_event_head"}


def task_of_weights(folder) -> str:
    """The task whose head a saved model's weights hold. Only for folders saved before `architectures`
    was written to config.json (eventlm 0.1); newer folders name their class."""
    from pathlib import Path

    from safetensors import safe_open

    from .modeling_flax_utils import WEIGHTS_NAME

    path = Path(folder) / WEIGHTS_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {folder} is not a model saved by save_pretrained")
    with safe_open(str(path), framework="numpy") as f:
        keys = list(f.keys())
    for task, head in HEAD_NAMES.items():
        if any(k.startswith(f"params.{head}.") for k in keys):
            return task
    raise ValueError(f"{path} holds no classification or next-event head (only a backbone?); use a model trained "
                     f"for classification or next-event prediction")
