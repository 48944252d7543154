"""The paper's optimizer: AdamW in two parameter groups, warm-up then cosine, gradient accumulation.

Group "ssm": the S5 parameters B, Lambda_re and Lambda_im at the SSM learning rate, without weight decay
(as the reference event-ssm code does: log_step, C, D and the norms are *not* in this group).
Group "regular": every other parameter at lr_factor x the SSM rate, with weight decay.
The SSM rate is scaled with the global batch: lr = ssm_base_lr x per-device batch x devices x accumulation.
"""

from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple

import jax
import optax

SSM_PARAM_NAMES = ("B", "Lambda_re", "Lambda_im")


def param_labels(params, ssm_names=SSM_PARAM_NAMES):
    """A pytree like `params` with "ssm" on leaves named B / Lambda_re / Lambda_im and "regular" elsewhere."""

    def label(path, _):
        name = getattr(path[-1], "key", getattr(path[-1], "name", None)) if path else None
        return "ssm" if name in ssm_names else "regular"

    return jax.tree_util.tree_map_with_path(label, params)


def scaled_learning_rate(ssm_base_lr: float, global_batch_size: int) -> float:
    """lr = base lr per sample x global batch (per-device batch x devices x hosts x accumulation steps)."""
    if ssm_base_lr <= 0 or global_batch_size <= 0:
        raise ValueError(
            f"learning rate scaling needs ssm_base_lr > 0 and a global batch > 0, got {ssm_base_lr} and "
            f"{global_batch_size}"
        )
    return ssm_base_lr * global_batch_size


def learning_rate_schedule(peak: float, total_steps: int, warmup_steps: int, schedule: str = "cosine") -> Callable:
    """Linear warm-up 0 -> peak over warmup_steps, then cosine to 0 at total_steps (or stay constant)."""
    if total_steps < 1:
        raise ValueError(f"the schedule needs at least one optimizer step, got total_steps={total_steps}")
    warmup_steps = min(max(int(warmup_steps), 0), total_steps)
    if schedule == "cosine":
        # lr(s) = peak * s / w for s < w; peak * (1 + cos(pi * (s - w) / (T - w))) / 2 afterwards
        return optax.warmup_cosine_decay_schedule(0.0, peak, warmup_steps, max(total_steps, warmup_steps + 1))
    if schedule == "constant":
        warm = optax.linear_schedule(0.0, peak, max(warmup_steps, 1))
        return optax.join_schedules([warm, optax.constant_schedule(peak)], [warmup_steps])
    raise ValueError(f"unknown learning-rate schedule {schedule!r}; use 'cosine' or 'constant'")


@dataclass
class OptimizerSetup:
    """The optax transformation and the two groups' schedules (for logging the learning rate)."""

    tx: optax.GradientTransformation
    schedules: Dict[str, Callable]
    accumulation_steps: int
    spec: Tuple = ()  # the hyperparameters it was built from (equal specs build equal transformations)

    def learning_rates(self, update_step: int) -> Dict[str, float]:
        return {name: float(fn(update_step)) for name, fn in self.schedules.items()}


def create_optimizer(
    ssm_lr: float,
    total_steps: int,
    warmup_steps: int = 0,
    lr_factor: float = 10.0,
    weight_decay: float = 0.03,
    ssm_weight_decay: float = 0.0,
    schedule: str = "cosine",
    accumulation_steps: int = 1,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    max_grad_norm: Optional[float] = None,
) -> OptimizerSetup:
    """AdamW in the paper's two groups. total_steps / warmup_steps count optimizer updates (micro-batches /
    accumulation_steps); with accumulation_steps > 1 the gradients of k micro-batches are averaged by
    optax.MultiSteps before one update."""
    if accumulation_steps < 1:
        raise ValueError(f"gradient_accumulation_steps must be >= 1, got {accumulation_steps}")
    schedules = {
        "ssm": learning_rate_schedule(ssm_lr, total_steps, warmup_steps, schedule),
        "regular": learning_rate_schedule(ssm_lr * lr_factor, total_steps, warmup_steps, schedule),
    }
    groups = {
        "ssm": optax.adamw(schedules["ssm"], b1=b1, b2=b2, eps=eps, weight_decay=ssm_weight_decay),
        "regular": optax.adamw(schedules["regular"], b1=b1, b2=b2, eps=eps, weight_decay=weight_decay),
    }
    tx = optax.multi_transform(groups, param_labels)
    if max_grad_norm:
        tx = optax.chain(optax.clip_by_global_norm(max_grad_norm), tx)
    if accumulation_steps > 1:
        tx = optax.MultiSteps(tx, every_k_schedule=accumulation_steps)
    spec = (ssm_lr, total_steps, warmup_steps, lr_factor, weight_decay, ssm_weight_decay, schedule,
            accumulation_steps, b1, b2, eps, max_grad_norm)
    return OptimizerSetup(tx=tx, schedules=schedules, accumulation_steps=accumulation_steps, spec=spec)


def count_groups(params) -> Tuple[int, int]:
    """(number of parameters in the ssm group, in the regular group)."""
    sizes = {"ssm": 0, "regular": 0}
    for label, leaf in zip(jax.tree_util.tree_leaves(param_labels(params)), jax.tree_util.tree_leaves(params)):
        sizes[label] += int(leaf.size)
    return sizes["ssm"], sizes["regular"]
