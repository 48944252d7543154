"""The paper's optimizer: AdamW in the model's parameter groups, warm-up then cosine, gradient accumulation.

The model names the group of every parameter (`model.param_groups(params)`, a pytree of names). The group
"regular" trains at lr_factor x the base rate with weight_decay; every other group the model names (EventSSM:
"ssm", its S5 parameters B, Lambda_re, Lambda_im, as the reference event-ssm code) at the base rate with
ssm_weight_decay. The base rate is scaled with the global batch: lr = ssm_base_lr x per-device batch x devices
x accumulation. (The argument names keep the paper's "ssm" for compatibility with existing configurations.)
"""

from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Tuple

import jax
import optax

REGULAR = "regular"  # the group at lr_factor x the base rate, with weight_decay


def param_labels(params, model=None):
    """The optimizer group of every leaf of `params`: model.param_groups(params); without a model, the groups
    of the default model type (the first of eventlm.auto.MODEL_TYPES), whose rule reads only `params`."""
    if model is None:
        from ..auto import MODEL_TYPES, AutoModel

        return AutoModel.model_class_for(next(iter(MODEL_TYPES))).param_groups(None, params)
    return model.param_groups(params)


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
    """The optax transformation and the schedules of the base and the regular rate (for logging)."""

    tx: optax.GradientTransformation
    schedules: Dict[str, Callable]  # "base", "regular"
    accumulation_steps: int
    spec: Tuple = ()  # the hyperparameters it was built from (equal specs + equal groups: equal transformations)
    logged: str = "base"  # the rate logged as learning_rate: "regular" when every group is regular

    def learning_rates(self, update_step: int) -> Dict[str, float]:
        return {name: float(fn(update_step)) for name, fn in self.schedules.items()}

    def learning_rate(self, update_step: int) -> float:
        return float(self.schedules[self.logged](update_step))


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
    labels: Any = None,
) -> OptimizerSetup:
    """AdamW per parameter group: "regular" at lr_factor x ssm_lr with weight_decay, every other group at ssm_lr
    with ssm_weight_decay. labels: the group of every parameter, a pytree like the params (model.param_groups())
    or a function of them (default: param_labels). total_steps / warmup_steps count optimizer updates
    (micro-batches / accumulation_steps); with accumulation_steps > 1 the gradients of k micro-batches are
    averaged by optax.MultiSteps before one update."""
    if accumulation_steps < 1:
        raise ValueError(f"gradient_accumulation_steps must be >= 1, got {accumulation_steps}")
    labels = param_labels if labels is None else labels
    schedules = {
        "base": learning_rate_schedule(ssm_lr, total_steps, warmup_steps, schedule),
        REGULAR: learning_rate_schedule(ssm_lr * lr_factor, total_steps, warmup_steps, schedule),
    }

    def group(name):
        rate, decay = (schedules[REGULAR], weight_decay) if name == REGULAR else (schedules["base"], ssm_weight_decay)
        return optax.adamw(rate, b1=b1, b2=b2, eps=eps, weight_decay=decay)

    def partition(tree):  # one AdamW per group the labels of `tree` name
        tree_labels = labels(tree) if callable(labels) else labels
        names = sorted(set(jax.tree_util.tree_leaves(tree_labels)))
        return optax.multi_transform({name: group(name) for name in names}, tree_labels)

    tx = optax.GradientTransformation(
        lambda params: partition(params).init(params),
        lambda updates, state, params=None: partition(updates).update(updates, state, params))
    if max_grad_norm:
        tx = optax.chain(optax.clip_by_global_norm(max_grad_norm), tx)
    if accumulation_steps > 1:
        tx = optax.MultiSteps(tx, every_k_schedule=accumulation_steps)
    spec = (ssm_lr, total_steps, warmup_steps, lr_factor, weight_decay, ssm_weight_decay, schedule,
            accumulation_steps, b1, b2, eps, max_grad_norm)
    all_regular = not callable(labels) and set(jax.tree_util.tree_leaves(labels)) == {REGULAR}
    return OptimizerSetup(tx=tx, schedules=schedules, accumulation_steps=accumulation_steps, spec=spec,
                          logged=REGULAR if all_regular else "base")


def count_groups(params, model=None) -> Tuple[int, int]:
    """(number of parameters in the model's own groups, in the regular group)."""
    sizes = [0, 0]
    for label, leaf in zip(jax.tree_util.tree_leaves(param_labels(params, model)), jax.tree_util.tree_leaves(params)):
        sizes[label == REGULAR] += int(leaf.size)
    return sizes[0], sizes[1]
