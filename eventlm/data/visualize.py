"""Pictures of event samples for dataset cards: a raster for audio sensors, a frame for cameras.

A sample is first reduced to a small *preview* (`sample_preview`): the accumulated (H, W) frame of a
camera, or at most `max_points` (time, channel) points of an audio raster. Previews are what a
converter keeps while it streams a dataset (one per class), so a million-event recording never has to
stay in memory for its picture. `plot_class_samples` draws one preview per class into a PNG.
"""

from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from .._io import atomic_path
from .events import as_events


def is_audio_sensor(sensor_size: Sequence[int]) -> bool:
    """An audio sensor (cochlea, SHD/SSC) has a height of one: x is the channel, y is always 0."""
    return int(sensor_size[1]) == 1


def event_frame(events: np.ndarray, sensor_size: Sequence[int]) -> np.ndarray:
    """Accumulated (H, W) frame: per pixel, ON minus OFF events (two polarities) or the event count (one)."""
    W, H, P = (int(s) for s in sensor_size)
    sign = np.where(events["p"] > 0, 1.0, -1.0) if P > 1 else np.ones(len(events))
    frame = np.zeros(H * W, np.float64)
    np.add.at(frame, events["y"].astype(np.int64) * W + events["x"].astype(np.int64), sign)  # flat index y·W + x
    return frame.reshape(H, W)


def raster_points(events: np.ndarray, max_points: int = 20000) -> np.ndarray:
    """At most `max_points` evenly spaced events as a (n, 2) array of (time in ms, channel)."""
    n = len(events)
    keep = np.linspace(0, n - 1, min(n, max_points)).astype(np.int64) if n else np.zeros(0, np.int64)
    t0 = events["t"][0] if n else 0
    return np.stack([(events["t"][keep] - t0) / 1000.0, events["x"][keep].astype(np.float64)], axis=1)


def sample_preview(events, sensor_size: Sequence[int], max_points: int = 20000) -> np.ndarray:
    """What the picture of one sample needs: a raster (audio) or an accumulated frame (camera)."""
    events = as_events(events, sensor_size)
    return raster_points(events, max_points) if is_audio_sensor(sensor_size) else event_frame(events, sensor_size)


def plot_class_samples(
    previews: Dict[int, Tuple[str, np.ndarray]],
    sensor_size: Sequence[int],
    path,
    title: Optional[str] = None,
    max_columns: int = 6,
) -> Path:
    """Draw one preview per class ({label: (class name, preview)}) into a PNG at `path` (written atomically)."""
    import matplotlib

    matplotlib.use("Agg", force=False)  # no display needed; leaves an already chosen backend alone
    import matplotlib.pyplot as plt

    if not previews:
        raise ValueError("plot_class_samples needs at least one sample preview, got none")
    audio = is_audio_sensor(sensor_size)
    labels = sorted(previews)
    cols = min(max_columns, len(labels))
    rows = -(-len(labels) // cols)  # ceil
    width, height = 2.6 * cols, 2.3 * rows + (0.3 if title else 0.0)
    fig, axes = plt.subplots(rows, cols, figsize=(width, height), squeeze=False)
    for ax in axes.ravel()[len(labels):]:
        ax.axis("off")
    for ax, label in zip(axes.ravel(), labels):
        name, preview = previews[label]
        if audio:
            size = float(np.clip(3000.0 / max(len(preview), 1), 0.5, 6.0))  # few events: bigger dots
            ax.scatter(preview[:, 0], preview[:, 1], s=size, c="k", marker=".", linewidths=0)
            ax.set_ylim(-0.5, int(sensor_size[0]) - 0.5)
            ax.set_xlabel("time (ms)", fontsize=7)
            ax.set_ylabel("channel", fontsize=7)
        else:
            lim = max(float(np.abs(preview).max()), 1.0)
            two_polarities = int(sensor_size[2]) > 1
            ax.imshow(preview, cmap="bwr" if two_polarities else "gray_r", vmin=-lim if two_polarities else 0,
                      vmax=lim, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
        ax.tick_params(labelsize=6)
        ax.set_title(f"{label}: {name}"[:32], fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    # margins in inches (tight_layout would draw the figure twice)
    fig.subplots_adjust(left=0.55 / width, right=1 - 0.1 / width, bottom=0.45 / height,
                        top=1 - (0.6 if title else 0.3) / height, wspace=0.4, hspace=0.7)
    path = Path(path)
    try:
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=90)
    finally:
        plt.close(fig)
    return path
