"""The embedded default dataset: SHD-like spike trains whose class lives in the temporal order of the events.

Every sample is a short "word" of K "syllables". A syllable is a burst of events in one band of the 700
cochlear channels (a Gaussian band with a slight frequency sweep); every class says the same K
syllables, once each, in its own order (classes are even permutations of the syllables, so any two
classes differ in at least three positions). Timing, tempo (per speaker and per sample), band position
(per speaker pitch and per syllable), event counts and uniform noise events are all random and
independent of the class. Hence the per-channel event counts of every class follow one distribution:
a bag-of-channels classifier scores at chance, while anything that sees the order (a sequence model,
or even channel histograms binned in time) separates the classes.

Samples use tonic's SHD dtype (t, x, p int64; t in µs, p = 1) and sensor (700, 1, 1), about 400 events
each. `SyntheticSHD` is a tonic-like dataset object (random access, deterministic per seed, split and
index); `make_synthetic_dataset` writes train/validation/test in the Hub layout of every eventlm
dataset (with its card); `load_synthetic_dataset` builds once into a cache and returns the DatasetDict.
"""

import hashlib
import itertools
import json
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import numpy as np

from ..resources import default_cache_dir

SYNTHETIC_VERSION = 1  # bump whenever the generator's output changes: cached builds are keyed by it
SENSOR_SIZE = (700, 1, 1)
SHD_DTYPE = np.dtype([("t", int), ("x", int), ("p", int)])  # tonic.datasets.SHD.dtype
SPLITS = ("train", "validation", "test")
SYLLABLE_NAMES = ("ba", "di", "gu", "ko", "me", "pa", "su", "to")

DEFAULTS = dict(
    num_classes=10,
    samples_per_class=300,
    num_syllables=None,  # default: the smallest K >= 4 whose even permutations give num_classes orders
    events_per_syllable=90.0,  # Poisson mean
    noise_events=30.0,  # Poisson mean, uniform over channels and time
    num_speakers=12,
    split_fractions=(0.8, 0.1, 0.1),
)


def class_orders(num_classes: int, num_syllables: Optional[int] = None) -> np.ndarray:
    """(num_classes, K) syllable orders: the first even permutations of K in lexicographic order.

    Even permutations (the alternating group) differ pairwise in at least 3 of K positions: no two
    classes are one swap of neighbours apart.
    """
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}")
    k = num_syllables or 4
    while num_syllables is None and _count_even(k) < num_classes:
        k += 1
    if k > len(SYLLABLE_NAMES) or _count_even(k) < num_classes:
        raise ValueError(f"{num_classes} classes need more syllable orders than num_syllables={k} gives "
                         f"({_count_even(k)}); use num_syllables between 4 and {len(SYLLABLE_NAMES)}")
    if k < 3:
        raise ValueError(f"num_syllables must be at least 3, got {k}")
    orders = [p for p in itertools.permutations(range(k)) if _is_even(p)]
    return np.array(orders[:num_classes], np.int64)


def _is_even(perm) -> bool:
    inversions = sum(1 for i in range(len(perm)) for j in range(i + 1, len(perm)) if perm[i] > perm[j])
    return inversions % 2 == 0


def _count_even(k: int) -> int:
    return max(1, int(np.prod(np.arange(1, k + 1))) // 2)


class SyntheticSHD:
    """A tonic-like SHD stand-in: `ds[i]` -> (events of dtype t,x,p int64, label); deterministic per (seed, split, i).

    Attributes as tonic's SHD: sensor_size (700, 1, 1), dtype, ordering, classes (syllable orders such as
    "ba-di-gu-ko"), speaker (per-sample speaker ids).
    """

    sensor_size = SENSOR_SIZE
    dtype = SHD_DTYPE
    ordering = SHD_DTYPE.names

    def __init__(self, split: str = "train", seed: int = 0, transform=None, target_transform=None, **options):
        unknown = set(options) - set(DEFAULTS)
        if unknown:
            raise TypeError(f"unknown synthetic dataset option(s) {sorted(unknown)}; known: {sorted(DEFAULTS)}")
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        self.options = {**DEFAULTS, **options}
        o = self.options
        if o["samples_per_class"] < 3:
            raise ValueError(f"samples_per_class must be at least 3 (one per split), got {o['samples_per_class']}")
        self.split, self.seed = split, int(seed)
        self.transform, self.target_transform = transform, target_transform
        self.orders = class_orders(o["num_classes"], o["num_syllables"])
        self.classes = ["-".join(SYLLABLE_NAMES[s] for s in order) for order in self.orders]
        split_id = SPLITS.index(split)
        per_class = _split_counts(o["samples_per_class"], o["split_fractions"])[split_id]
        rng = np.random.default_rng([self.seed, split_id])
        self.targets = rng.permutation(np.repeat(np.arange(o["num_classes"]), per_class))
        self.speaker = rng.integers(0, o["num_speakers"], len(self.targets))  # per-sample speaker ids
        self._split_id = split_id
        self._traits = [self._speaker_traits(s) for s in range(o["num_speakers"])]

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        if not -len(self) <= index < len(self):
            raise IndexError(f"sample {index} is outside the {self.split} split of {len(self)} samples")
        index = index % len(self)
        label = int(self.targets[index])
        events = _make_sample(np.random.default_rng([self.seed, self._split_id, index]), self.orders[label],
                              self._traits[int(self.speaker[index])], self.options)
        if self.transform is not None:
            events = self.transform(events)
        if self.target_transform is not None:
            label = self.target_transform(label)
        return events, label

    def _speaker_traits(self, speaker: int) -> Tuple[float, float]:
        """A speaker's tempo factor and pitch shift (in band spacings), fixed per (seed, speaker)."""
        rng = np.random.default_rng([self.seed, 1000, speaker])
        return float(rng.uniform(0.85, 1.15)), float(rng.uniform(-0.06, 0.06))

    def __repr__(self):
        return f"SyntheticSHD(split={self.split!r}, seed={self.seed}, samples={len(self)}, classes={len(self.classes)})"


def _split_counts(samples_per_class: int, fractions) -> Tuple[int, int, int]:
    """Samples per class in train / validation / test (each at least one, summing to samples_per_class)."""
    if len(fractions) != 3 or min(fractions) <= 0:
        raise ValueError(f"split_fractions must be three positive numbers (train, validation, test), got {fractions}")
    total = float(sum(fractions))
    val = max(1, int(round(samples_per_class * fractions[1] / total)))
    test = max(1, int(round(samples_per_class * fractions[2] / total)))
    return samples_per_class - val - test, val, test


def _make_sample(rng: np.random.Generator, order: np.ndarray, speaker, o: Dict[str, Any]) -> np.ndarray:
    """One word: syllables `order` as event bursts in their channel bands, plus noise; tonic SHD dtype, sorted by t."""
    W = SENSOR_SIZE[0]
    k = len(order)
    spacing = W / k  # channel distance between neighbouring band centres
    tempo = speaker[0] * rng.uniform(0.95, 1.05)
    durations = rng.uniform(90e3, 150e3, k) * tempo  # µs per syllable
    gaps = rng.uniform(20e3, 60e3, k) * tempo  # µs of silence before each syllable
    onsets = rng.uniform(10e3, 60e3) + np.cumsum(gaps + durations) - durations  # start of syllable i
    counts = rng.poisson(o["events_per_syllable"], k)
    syl = np.repeat(np.arange(k), counts)  # position in the word of every syllable event
    band = order[syl]  # which syllable (band) each event belongs to
    u = rng.uniform(0.0, 1.0, len(syl))  # relative time inside its syllable
    t = onsets[syl] + u * durations[syl]
    shift = (speaker[1] + rng.uniform(-0.06, 0.06, k)[syl]) * spacing  # speaker pitch + per-syllable jitter
    sweep = np.where(band % 2 == 0, 1.0, -1.0) * 0.15 * spacing * (u - 0.5)  # rising / falling formant
    x = (band + 0.5) * spacing + shift + sweep + rng.normal(0.0, spacing / 8, len(syl))
    n_noise = rng.poisson(o["noise_events"])
    end = onsets[-1] + durations[-1] + 50e3
    t = np.concatenate([t, rng.uniform(0.0, end, n_noise)])
    x = np.concatenate([x, rng.uniform(0, W, n_noise)])
    events = np.empty(len(t), SHD_DTYPE)
    order_t = np.argsort(t, kind="stable")
    events["t"] = t[order_t].astype(np.int64)
    events["x"] = np.clip(np.round(x[order_t]), 0, W - 1).astype(np.int64)
    events["p"] = 1  # tonic's SHD carries p = 1
    return events


def _params(seed, num_classes, samples_per_class, options) -> Dict[str, Any]:
    params = {**DEFAULTS, **options, "num_classes": num_classes, "samples_per_class": samples_per_class}
    params["split_fractions"] = list(params["split_fractions"])
    return {"version": SYNTHETIC_VERSION, "seed": int(seed), **params}


def synthetic_dataset_path(cache_dir=None, seed: int = 0, num_classes: int = 10, samples_per_class: int = 300,
                           **options) -> Path:
    """Where the build with these parameters lives inside `cache_dir` (a name keyed by version and parameters)."""
    params = _params(seed, num_classes, samples_per_class, options)
    key = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]
    return Path(cache_dir or default_cache_dir()) / "datasets" / f"synthetic-shd-v{SYNTHETIC_VERSION}-{key}"


def make_synthetic_dataset(output_dir=None, seed: int = 0, num_classes: int = 10, samples_per_class: int = 300, *,
                           overwrite: bool = False, **options) -> Path:
    """Build the synthetic dataset (train / validation / test) in the Hub layout at `output_dir`; returns the folder.

    output_dir=None builds into the eventlm cache (`synthetic_dataset_path`) and reuses a finished build there.
    Options (see DEFAULTS): num_syllables, events_per_syllable, noise_events, num_speakers, split_fractions.
    Deterministic: the same arguments give the same events, byte for byte.
    """
    from .hub import tonic_to_hub_dataset

    if output_dir is None:
        output_dir = synthetic_dataset_path(None, seed, num_classes, samples_per_class, **options)
        if (output_dir / "README.md").is_file() and not overwrite:
            return output_dir
    params = _params(seed, num_classes, samples_per_class, options)
    splits = {s: SyntheticSHD(s, seed, num_classes=num_classes, samples_per_class=samples_per_class, **options)
              for s in SPLITS}
    ds = splits["train"]
    description = (
        f"A synthetic SHD-like dataset built by `eventlm.data.synthetic` (seed {seed}): {num_classes} classes, each "
        f"the same {ds.orders.shape[1]} syllables ({', '.join(SYLLABLE_NAMES[:ds.orders.shape[1]])}: event bursts in "
        f"separate channel bands) spoken in its own order, with random timing, tempo, pitch, event counts and noise. "
        f"The class lives only in the temporal order of the events: per-channel event counts are identically "
        f"distributed in every class, so a bag-of-channels classifier scores at chance "
        f"(`eventlm.data.synthetic.bag_of_channels_accuracy`), while a sequence model separates the classes."
    )
    return tonic_to_hub_dataset(
        splits, output_dir, license="apache-2.0", pretty_name="eventlm synthetic SHD (class in temporal order)",
        description=description, overwrite=overwrite, card_extra={"generator": params},
    )


def load_synthetic_dataset(cache_dir=None, seed: int = 0, num_classes: int = 10, samples_per_class: int = 300,
                           **options):
    """The synthetic dataset as a datasets.DatasetDict in numpy format (built into `cache_dir` on first use).

    numpy format: datasets' jax format would truncate the int64 timestamps.
    """
    folder = synthetic_dataset_path(cache_dir, seed, num_classes, samples_per_class, **options)
    return load_cached_build(folder, lambda out: make_synthetic_dataset(out, seed, num_classes, samples_per_class,
                                                                        **options), cache_dir)


def load_cached_build(folder: Path, build, cache_dir=None):
    """`folder` as a datasets.DatasetDict in numpy format, first calling build(folder) unless a finished build is there.

    A build that fails because another process finished the same build first is no error. numpy format:
    datasets' jax format would truncate the int64 timestamps.
    """
    import datasets

    if not (folder / "README.md").is_file():
        try:
            build(folder)
        except (ValueError, OSError):
            if not (folder / "README.md").is_file():  # not another process finishing the same build first
                raise
    hf_cache = None if cache_dir is None else str(Path(cache_dir) / "hf-datasets")
    return datasets.load_dataset(str(folder), cache_dir=hf_cache).with_format("numpy")


# ----------------------------------------------------------------------------------------------------------
# the bag-of-channels baseline
# ----------------------------------------------------------------------------------------------------------


def channel_counts(split, num_channels: int) -> Tuple[np.ndarray, np.ndarray]:
    """Per-sample event counts per channel (n, num_channels) and labels (n,) of a split.

    split: a datasets.Dataset with columns x and label, a dict {"x": [...], "label": [...]}, or a sequence of
    (events, label) pairs (events: anything with an x field).
    """
    if hasattr(split, "data") and hasattr(split, "column_names"):  # datasets.Dataset: read the Arrow columns
        import pyarrow as pa

        x_col = split.data.column("x")
        if getattr(split, "_indices", None) is not None:  # a selected / shuffled view
            x_col = x_col.take(pa.array(np.asarray(split._indices.column(0), np.int64)))
        x_col = pa.concat_arrays(x_col.chunks) if isinstance(x_col, pa.ChunkedArray) else x_col
        lengths = x_col.value_lengths().fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
        flat = x_col.flatten().to_numpy(zero_copy_only=False).astype(np.int64)
        labels = np.asarray(split.with_format("numpy")["label"], np.int64)
    else:
        if isinstance(split, dict):
            xs, labels = list(split["x"]), split["label"]
        else:
            pairs = list(split)
            xs = [e["x"] for e, _ in pairs]
            labels = [label for _, label in pairs]
        lengths = np.array([len(x) for x in xs], np.int64)
        flat = np.concatenate([np.asarray(x, np.int64) for x in xs]) if len(xs) else np.zeros(0, np.int64)
        labels = np.asarray(labels, np.int64)
    if flat.size and (flat.min() < 0 or flat.max() >= num_channels):
        raise ValueError(f"channel {int(flat.max() if flat.max() >= num_channels else flat.min())} is outside "
                         f"num_channels={num_channels}")
    row = np.repeat(np.arange(len(lengths)), lengths)
    counts = np.bincount(row * num_channels + flat, minlength=len(lengths) * num_channels)  # (sample, channel) cell
    return counts.reshape(len(lengths), num_channels).astype(np.float64), labels


def fit_softmax_regression(features: np.ndarray, labels: np.ndarray, num_classes: int, l2: float = 1.0,
                           max_iter: int = 500) -> np.ndarray:
    """Multinomial logistic regression by L-BFGS: weights (D + 1, C) minimising mean cross-entropy + l2/(2n)·|W|².

    The bias row (last) is not penalised, as in scikit-learn's LogisticRegression(C=1/l2).
    """
    from scipy.optimize import minimize

    n, d = features.shape
    X = np.hstack([features, np.ones((n, 1))])
    Y = np.eye(num_classes)[labels]

    def loss_grad(w):
        W = w.reshape(d + 1, num_classes)
        z = X @ W
        z -= z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))  # log softmax
        reg = 0.5 * l2 * np.sum(W[:-1] ** 2)
        loss = -np.sum(Y * logp) + reg
        grad = X.T @ (np.exp(logp) - Y)
        grad[:-1] += l2 * W[:-1]
        return loss / n, grad.ravel() / n

    res = minimize(loss_grad, np.zeros((d + 1) * num_classes), jac=True, method="L-BFGS-B",
                   options={"maxiter": max_iter})
    return res.x.reshape(d + 1, num_classes)


def bag_of_channels_accuracy(train, test, num_channels: int = SENSOR_SIZE[0], l2: float = 1.0) -> float:
    """Test accuracy of logistic regression on per-channel event counts (log1p, standardised on train).

    The baseline that ignores time: near chance (1 / num_classes) on the synthetic dataset.
    train, test: see `channel_counts`.
    """
    x_train, y_train = channel_counts(train, num_channels)
    x_test, y_test = channel_counts(test, num_channels)
    if len(y_train) == 0 or len(y_test) == 0:
        raise ValueError(f"bag_of_channels_accuracy needs samples in both splits, got {len(y_train)} and {len(y_test)}")
    f_train, f_test = np.log1p(x_train), np.log1p(x_test)
    mean, std = f_train.mean(axis=0), f_train.std(axis=0) + 1e-6
    num_classes = int(max(y_train.max(), y_test.max())) + 1
    W = fit_softmax_regression((f_train - mean) / std, y_train, num_classes, l2)
    scores = np.hstack([(f_test - mean) / std, np.ones((len(f_test), 1))]) @ W
    return float(np.mean(scores.argmax(axis=1) == y_test))
