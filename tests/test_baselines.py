"""The main job's baselines on hand-checkable data: what they can see scores ~1.0, shuffled labels ~chance."""

import numpy as np
import pytest

from eventlm.training import baselines as B

datasets = pytest.importorskip("datasets")


def _rows(n, seed, order_classes=True, shuffle=False):
    """Two classes of 40-event streams on 4 channels. order_classes: class 0 says channel 0 then 1, class 1
    says 1 then 0 (the same counts: only time tells them apart); else class c fires on channel 2 + c."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        label = i % 2
        t = np.sort(rng.integers(0, 100_000, 40))
        if order_classes:
            first, second = (0, 1) if label == 0 else (1, 0)
            x = np.where(np.arange(40) < 20, first, second)
        else:
            x = np.full(40, 2 + label)
        rows.append({"t": t, "x": x, "label": label})
    if shuffle:
        labels = rng.permutation([r["label"] for r in rows])
        for r, y in zip(rows, labels):
            r["label"] = int(y)
    return datasets.Dataset.from_list(rows).with_format("numpy")  # what the main job hands the baselines


def test_binned_counts_by_hand():
    rows = [{"t": np.array([10, 20, 30, 110]), "x": np.array([0, 1, 1, 2]), "label": 1},
            {"t": np.array([], np.int64), "x": np.array([], np.int64), "label": 0}]
    counts, labels = B.binned_counts(rows, num_channels=3, num_bins=2)
    # span 10..110 µs: bin 0 holds t < 60, bin 1 the rest (the last event included)
    np.testing.assert_array_equal(counts[0], [[1, 2, 0], [0, 0, 1]])
    np.testing.assert_array_equal(counts[1], np.zeros((2, 3)))
    np.testing.assert_array_equal(labels, [1, 0])
    with pytest.raises(ValueError, match="channel 2 is outside num_channels=2"):
        B.binned_counts(rows, num_channels=2)


def test_binned_mlp_sees_order_that_bag_of_channels_cannot():
    from eventlm.data.synthetic import bag_of_channels_accuracy

    train, test = _rows(80, 0), _rows(40, 1)
    assert B.binned_mlp_accuracy(train, test, num_channels=4, epochs=30) >= 0.95
    assert bag_of_channels_accuracy(train, test, num_channels=4) <= 0.7  # identical counts in both classes


def test_baselines_on_separable_and_shuffled_labels():
    results = B.classification_baselines(_rows(80, 0, order_classes=False), _rows(40, 1, order_classes=False), 4)
    assert set(results) == {"bag_of_channels_baseline_accuracy", "binned_mlp_baseline_accuracy"}
    assert min(results.values()) >= 0.95
    shuffled = [B.binned_mlp_accuracy(_rows(80, s, shuffle=True), _rows(200, s + 100, shuffle=True), 4, epochs=20,
                                      seed=s) for s in range(3)]
    assert 0.3 <= float(np.mean(shuffled)) <= 0.7, shuffled  # chance is 0.5


def test_one_key_per_baseline_and_the_summary_lines():
    assert [B.baseline_key(n) for n in B.BASELINES] == ["bag_of_channels_baseline_accuracy",
                                                        "binned_mlp_baseline_accuracy"]
    with pytest.raises(ValueError, match="unknown baseline 'gru'"):
        B.baseline_key("gru")
    lines = B.baseline_lines({"bag_of_channels_baseline_accuracy": 0.25, "binned_mlp_baseline_accuracy": 0.5}, 20)
    assert lines[0].endswith(": 0.2500") and "8 time bins: 0.5000" in lines[1] and lines[-1].endswith("0.0500")
    assert B.baseline_lines({}, 20) == []
