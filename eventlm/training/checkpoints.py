"""Orbax checkpoints of a training run: the latest one and the best one by the validation metric.

A checkpoint holds the whole training state (parameters, batch statistics, optimizer state, step, RNG
key) and, as JSON, where the data order stands (epoch and batch position inside the epoch's seeded
permutation) so that a resumed run continues with exactly the batches the uninterrupted run would see.

Atomic: orbax writes each step into a temporary folder and renames it only when complete, so a process
killed mid-write (SIGKILL included) leaves the previous latest checkpoint readable; the half-written
temporary folder is removed the next time the folder is opened.
"""

import logging
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_managers import AnyPreservationPolicy, BestN, LatestN

logger = logging.getLogger(__name__)


class _NoMetricNotice(logging.Filter):
    """orbax warns on every checkpoint saved without metrics (mid-epoch ones); that is intended here."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "did not provide metrics" not in record.getMessage()


logging.getLogger("absl").addFilter(_NoMetricNotice())


class CheckpointStore:
    """`directory`/<step>/{state, meta}: keeps the `keep_latest` newest checkpoints and the best one by
    `metric` (mode "max" for accuracy, "min" for a loss)."""

    def __init__(self, directory, metric: str = "accuracy", mode: str = "max", keep_latest: int = 1,
                 async_save: bool = True):
        if mode not in ("max", "min"):
            raise ValueError(f"checkpoint metric mode must be 'max' or 'min', got {mode!r}")
        if keep_latest < 1:
            raise ValueError(f"keep_latest must be >= 1 (the latest checkpoint is what resume reads), got {keep_latest}")
        self.directory = Path(directory).absolute()
        self.metric, self.mode = metric, mode
        policy = AnyPreservationPolicy([
            LatestN(n=keep_latest),
            # BestN sorts ascending and keeps the tail: reverse for "min" keeps the smallest
            BestN(get_metric_fn=self._metric_value, reverse=(mode == "min"), n=1,
                  keep_checkpoints_without_metrics=False),
        ])
        # best_fn makes orbax write each step's metrics to disk (so a reopened store still knows the best)
        options = ocp.CheckpointManagerOptions(preservation_policy=policy, best_fn=self._metric_value,
                                               best_mode=mode, keep_checkpoints_without_metrics=True,
                                               cleanup_tmp_directories=True, enable_async_checkpointing=async_save)
        self.manager = ocp.CheckpointManager(self.directory, item_names=("state", "meta"), options=options)

    def _metric_value(self, metrics: Dict[str, float]) -> float:
        if self.metric not in metrics:
            raise ValueError(f"checkpoint metrics {sorted(metrics)} lack the selection metric {self.metric!r}")
        return float(metrics[self.metric])

    def save(self, step: int, state: Any, meta: Dict[str, Any], metrics: Optional[Dict[str, float]] = None) -> None:
        """Write checkpoint `step` (in the background; `wait()` blocks until it is on disk)."""
        args = ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))
        clean = None if metrics is None else {k: float(v) for k, v in metrics.items()}
        self.manager.save(int(step), args=args, metrics=clean, force=True)

    def latest_step(self) -> Optional[int]:
        return self.manager.latest_step()

    def best_step(self) -> Optional[int]:
        """The kept step with the best selection metric (None before any evaluated checkpoint)."""
        scored = []
        for step in self.manager.all_steps():
            metrics = self.manager.metrics(step)
            if metrics and self.metric in metrics:
                scored.append((float(metrics[self.metric]), step))
        if not scored:
            return None
        sign = 1.0 if self.mode == "max" else -1.0
        return max(scored, key=lambda item: (sign * item[0], item[1]))[1]  # ties: the later step, as BestN keeps

    def restore(self, step: int, like: Any) -> Tuple[Any, Dict[str, Any]]:
        """Checkpoint `step` restored onto the structure, dtypes and shardings of the pytree `like`."""
        abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, like)
        args = ocp.args.Composite(state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore())
        restored = self.manager.restore(int(step), args=args)
        return restored["state"], dict(restored["meta"])

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()
