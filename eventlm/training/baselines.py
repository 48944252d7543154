"""Simple classifiers beside the model on the same split, so a reader sees what the model adds.

- bag_of_channels: multinomial logistic regression on per-channel event counts (no time at all);
  `eventlm.data.synthetic.bag_of_channels_accuracy`.
- binned_mlp: a one-hidden-layer MLP (JAX, Adam) on event counts in channels × time bins, the bins spanning
  each sample from its first to its last event (coarse time, no event order within a bin).

Each baseline's accuracy is stored under one key, `baseline_key(name)` = "<name>_baseline_accuracy", in the
main job's results, eval_results.json and model card. Both run in seconds on CPU.
"""

from typing import Dict, List, Tuple

import numpy as np

from ..data.events import flat_column

BASELINES = {  # name -> what it is (for the summary and the card)
    "bag_of_channels": "logistic regression on per-channel event counts (no time)",
    "binned_mlp": "MLP on event counts in channels × {bins} time bins",
}
NUM_TIME_BINS = 8


def baseline_key(name: str) -> str:
    """The results key of baseline `name` ("bag_of_channels" -> "bag_of_channels_baseline_accuracy")."""
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; known: {sorted(BASELINES)}")
    return f"{name}_baseline_accuracy"


def binned_counts(split, num_channels: int, num_bins: int = NUM_TIME_BINS) -> Tuple[np.ndarray, np.ndarray]:
    """(n, num_bins, num_channels) event counts and (n,) labels; bin b of a sample covers the b-th of num_bins
    equal parts of its span from first to last event. split: a datasets.Dataset (or rows) with t, x, label."""
    t, offsets = flat_column(split, "t")
    x, _ = flat_column(split, "x")
    labels = np.asarray(split["label"] if hasattr(split, "column_names") else [r["label"] for r in split], np.int64)
    t, x = np.asarray(t, np.int64), np.asarray(x, np.int64)
    if x.size and (x.min() < 0 or x.max() >= num_channels):
        raise ValueError(f"channel {int(x.max() if x.max() >= num_channels else x.min())} is outside "
                         f"num_channels={num_channels}")
    n, lengths = len(offsets) - 1, np.diff(offsets)
    row = np.repeat(np.arange(n), lengths)
    start, end, filled = np.zeros(n, np.int64), np.zeros(n, np.int64), lengths > 0
    start[filled], end[filled] = t[offsets[:-1][filled]], t[offsets[1:][filled] - 1]  # events are sorted by time
    span = np.maximum(end - start, 1)
    bins = np.minimum((t - start[row]) * num_bins // span[row], num_bins - 1)  # the last event falls in the last bin
    counts = np.bincount((row * num_bins + bins) * num_channels + x, minlength=n * num_bins * num_channels)
    return counts.reshape(n, num_bins, num_channels).astype(np.float64), labels


def fit_mlp(features: np.ndarray, labels: np.ndarray, num_classes: int, hidden: int = 128, epochs: int = 60,
            batch_size: int = 64, learning_rate: float = 1e-3, l2: float = 1e-3, seed: int = 0):
    """A ReLU MLP (D → hidden → C) trained by Adam on mean cross-entropy + l2/2·|W|² (JAX: one compiled scan over
    all steps; numpy's threaded BLAS was 10× slower on a busy 2-core box); returns predict(features) -> classes."""
    import jax
    import jax.numpy as jnp
    import optax

    rng = np.random.default_rng(seed)
    n, d = features.shape
    params = {"W1": rng.normal(0, np.sqrt(2.0 / d), (d, hidden)), "b1": np.zeros(hidden),
              "W2": rng.normal(0, np.sqrt(1.0 / hidden), (hidden, num_classes)), "b2": np.zeros(num_classes)}
    params = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float32), params)
    per_epoch = max(1, n // batch_size)
    batches = np.stack([np.resize(idx, batch_size) for _ in range(epochs)  # equal batches: one compiled step
                        for idx in np.array_split(rng.permutation(n), per_epoch)])
    X, Y = jnp.asarray(features, jnp.float32), jnp.asarray(labels, jnp.int32)
    logits = lambda p, x: jax.nn.relu(x @ p["W1"] + p["b1"]) @ p["W2"] + p["b2"]
    optimizer = optax.adam(learning_rate)

    def loss(p, idx):
        ce = optax.softmax_cross_entropy_with_integer_labels(logits(p, X[idx]), Y[idx]).mean()
        return ce + 0.5 * l2 * (jnp.sum(p["W1"] ** 2) + jnp.sum(p["W2"] ** 2))

    def step(carry, idx):
        p, state = carry
        updates, state = optimizer.update(jax.grad(loss)(p, idx), state)
        return (optax.apply_updates(p, updates), state), None

    (params, _), _ = jax.jit(lambda p: jax.lax.scan(step, (p, optimizer.init(p)), jnp.asarray(batches)))(params)
    return lambda f: np.asarray(logits(params, jnp.asarray(f, jnp.float32)).argmax(axis=1))


def binned_mlp_accuracy(train, test, num_channels: int, num_bins: int = NUM_TIME_BINS, seed: int = 0, **mlp) -> float:
    """Test accuracy of `fit_mlp` on log1p binned counts (standardised on train). train, test: see `binned_counts`."""
    x_train, y_train = binned_counts(train, num_channels, num_bins)
    x_test, y_test = binned_counts(test, num_channels, num_bins)
    if len(y_train) == 0 or len(y_test) == 0:
        raise ValueError(f"binned_mlp_accuracy needs samples in both splits, got {len(y_train)} and {len(y_test)}")
    f_train, f_test = np.log1p(x_train.reshape(len(x_train), -1)), np.log1p(x_test.reshape(len(x_test), -1))
    mean, std = f_train.mean(axis=0), f_train.std(axis=0) + 1e-6
    num_classes = int(max(y_train.max(), y_test.max())) + 1
    predict = fit_mlp((f_train - mean) / std, y_train, num_classes, seed=seed, **mlp)
    return float(np.mean(predict((f_test - mean) / std) == y_test))


def classification_baselines(train, test, num_channels: int, seed: int = 0) -> Dict[str, float]:
    """{baseline_key(name): test accuracy} of every baseline, fitted on `train`, scored on `test`."""
    from ..data.synthetic import bag_of_channels_accuracy

    return {baseline_key("bag_of_channels"): bag_of_channels_accuracy(train, test, num_channels=num_channels),
            baseline_key("binned_mlp"): binned_mlp_accuracy(train, test, num_channels, seed=seed)}


def baseline_lines(results: Dict[str, float], num_labels: int) -> List[str]:
    """One line per baseline found in `results` ("<what>: 0.1234"), then chance."""
    lines = [f"{BASELINES[name].format(bins=NUM_TIME_BINS)}: {results[baseline_key(name)]:.4f}"
             for name in BASELINES if baseline_key(name) in results]
    return lines + [f"chance (1 / {num_labels} classes): {1 / num_labels:.4f}"] if lines else []
