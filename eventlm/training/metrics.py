"""Metrics: accuracy and confusion matrix, a JSONL + TensorBoard log, and HF-examples result files.

Files in the output folder (as transformers' examples write them):
  metrics.jsonl        one line per logging event: {"step", "epoch", "split", <metric>: value, ...}
  runs/                TensorBoard event files (tensorboardX), scalars "<split>/<metric>"
  train_results.json, eval_results.json, test_results.json, all_results.json
"""

import json
import logging
import math
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from .._io import atomic_path, write_json_atomic as _write_json_atomic

logger = logging.getLogger(__name__)
METRICS_FILE = "metrics.jsonl"


def confusion_matrix(labels, predictions, num_labels: int, weights=None) -> np.ndarray:
    """counts[i, j] = number of samples of true class i predicted as class j."""
    labels = np.asarray(labels, np.int64).ravel()
    predictions = np.asarray(predictions, np.int64).ravel()
    if labels.shape != predictions.shape:
        raise ValueError(f"labels {labels.shape} and predictions {predictions.shape} differ in length")
    for name, values in (("labels", labels), ("predictions", predictions)):
        if values.size and (values.min() < 0 or values.max() >= num_labels):
            bad = values[(values < 0) | (values >= num_labels)][0]
            raise ValueError(f"{name} hold the class {bad}, outside 0..{num_labels - 1}")
    w = np.ones(labels.shape, np.int64) if weights is None else np.asarray(weights, np.int64).ravel()
    counts = np.zeros((num_labels, num_labels), np.int64)
    np.add.at(counts, (labels, predictions), w)
    return counts


def accuracy_from_confusion(counts: np.ndarray) -> float:
    """Correct / total = trace / sum (nan for an empty matrix)."""
    total = counts.sum()
    return float(np.trace(counts) / total) if total else float("nan")


def write_json_atomic(path, obj: Any) -> None:
    """Results JSON (numpy scalars and arrays turned into builtins), written atomically, keys sorted."""
    _write_json_atomic(path, obj, default=_to_builtin, sort_keys=True)


def _to_builtin(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if hasattr(value, "__array__"):
        return np.asarray(value).tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def save_results(output_dir, split: str, metrics: Dict[str, Any], combined: bool = True) -> Path:
    """`{split}_results.json`, merged into `all_results.json` (transformers' Trainer.save_metrics)."""
    output_dir = Path(output_dir)
    scalars = {k: _to_builtin(v) if not isinstance(v, (int, float, str)) else v for k, v in metrics.items()}
    path = output_dir / f"{split}_results.json"
    write_json_atomic(path, scalars)
    if combined:
        all_path = output_dir / "all_results.json"
        merged = json.loads(all_path.read_text()) if all_path.exists() else {}
        merged.update(scalars)
        write_json_atomic(all_path, merged)
    return path


def read_jsonl(path) -> List[Dict[str, Any]]:
    """The records of a .jsonl file. A torn last line (a run killed while appending it) is dropped with a
    warning; a damaged line before it is a ValueError naming the file and the line."""
    path = Path(path)
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError(f"a JSON {type(record).__name__}, not an object")
        except ValueError as err:
            if number == len(lines):
                logger.warning("%s: dropping its last line, cut off or damaged (%s): %r", path, err, line[:80])
                break
            raise ValueError(f"{path}: line {number} is not a JSON record ({err}): {line[:80]!r}; the file is "
                             "damaged (remove that line to resume)") from err
        records.append(record)
    return records


class MetricsLogger:
    """Appends metrics to `output_dir/metrics.jsonl` and, unless disabled, to TensorBoard (`runs/`)."""

    def __init__(self, output_dir, tensorboard: bool = True, enabled: bool = True):
        self.output_dir = Path(output_dir)
        self.path = self.output_dir / METRICS_FILE
        self.enabled = enabled
        self._tb = None
        if enabled and tensorboard:
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(logdir=str(self.output_dir / "runs"))

    def truncate_after(self, step: int) -> None:
        """Drop records beyond `step` (a resumed run re-logs the steps after its checkpoint)."""
        if not self.enabled or not self.path.exists():
            return
        keep = [r for r in read_jsonl(self.path) if r.get("step", 0) <= step]
        with atomic_path(self.path) as tmp:
            tmp.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in keep), encoding="utf-8")

    def log(self, split: str, step: int, metrics: Dict[str, Any], epoch: Optional[float] = None) -> Dict[str, Any]:
        record = {"split": split, "step": int(step)}
        if epoch is not None:
            record["epoch"] = round(float(epoch), 4)
        for key, value in metrics.items():
            value = _to_builtin(value) if not isinstance(value, (int, float, str)) else value
            if isinstance(value, float) and not math.isfinite(value):
                value = str(value)  # JSON has no nan / inf
            record[key] = value
        if not self.enabled:
            return record
        self.output_dir.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
        if self._tb is not None:
            for key, value in record.items():
                if key not in ("split", "step") and isinstance(value, (int, float)):
                    self._tb.add_scalar(f"{split}/{key}", value, int(step))
        return record

    def records(self) -> List[Dict[str, Any]]:
        return read_jsonl(self.path)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None
