"""Pictures for the model card: training curves and the confusion matrix (matplotlib, Agg backend)."""

from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from .._io import atomic_path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)  # no display; never opens a window
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path) -> Path:
    """Save the figure atomically, then close it."""
    try:
        with atomic_path(path, suffix=Path(path).suffix) as tmp:
            fig.savefig(tmp, dpi=110, bbox_inches="tight")
    finally:
        plt.close(fig)
    return Path(path)


def _series(records: Sequence[Dict], split: str, key: str):
    points = [(r["step"], r[key]) for r in records if r.get("split") == split and isinstance(r.get(key), (int, float))]
    return ([p[0] for p in points], [p[1] for p in points]) if points else ([], [])


def plot_training_curves(records: List[Dict], path, metrics: Sequence[str] = ("loss", "accuracy"),
                         baselines: Optional[Dict[str, float]] = None) -> Optional[Path]:
    """One panel per metric: the train curve and the validation points against the step, and a dashed line
    at `baselines[metric]` where given (e.g. a context-free model's NLL). Returns None when the records hold
    none of the metrics."""
    plt = _pyplot()
    panels = [m for m in metrics if any(_series(records, s, m)[0] for s in ("train", "validation"))]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.4), squeeze=False)
    for ax, metric in zip(axes[0], panels):
        for split, style, label in (("train", "-", "train"), ("validation", "o-", "validation")):
            x, y = _series(records, split, metric)
            if x:
                ax.plot(x, y, style, label=label, markersize=3)
        if (baselines or {}).get(metric) is not None:
            ax.axhline(baselines[metric], linestyle="--", color="gray", label="baseline")
        ax.set_xlabel("step")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return _save(plt, fig, path)


def plot_confusion_matrix(counts: np.ndarray, path, class_names: Optional[Sequence[str]] = None,
                          title: str = "confusion matrix (test)") -> Path:
    """Row-normalised confusion matrix (rows: true class, columns: predicted class)."""
    plt = _pyplot()
    counts = np.asarray(counts)
    n = counts.shape[0]
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = min(2.0 + 0.4 * n, 14.0)
    fig, ax = plt.subplots(figsize=(size, size))
    im = ax.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0)
    names = list(class_names) if class_names is not None else [str(i) for i in range(n)]
    crowded = n > 10 or max((len(str(name)) for name in names), default=0) * n > 40
    ax.set_xticks(range(n), names, rotation=45 if crowded else 0, ha="right" if crowded else "center",
                  fontsize=7 if n > 20 else 9)
    ax.set_yticks(range(n), names, fontsize=7 if n > 20 else 9)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    if n <= 20:
        for i in range(n):
            for j in range(n):
                if counts[i, j]:
                    ax.text(j, i, int(counts[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if rates[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046)
    return _save(plt, fig, path)
