"""The embedded synthetic dataset: tonic SHD dtype and sensor, deterministic, class only in temporal order."""

import itertools
import time

import numpy as np
import pytest
import yaml

datasets = pytest.importorskip("datasets")

from eventlm.data import synthetic  # noqa: E402
from eventlm.data.synthetic import (  # noqa: E402
    SyntheticSHD,
    bag_of_channels_accuracy,
    channel_counts,
    class_orders,
    fit_softmax_regression,
    load_synthetic_dataset,
    make_synthetic_dataset,
)

TINY = dict(num_classes=10, samples_per_class=6)


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    """The default dataset (what the README's main job trains on), built once for this module."""
    root = tmp_path_factory.mktemp("synthetic")
    start = time.perf_counter()
    folder = make_synthetic_dataset(root / "default")
    seconds = time.perf_counter() - start
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    print(f"\nsynthetic dataset: built in {seconds:.1f} s, {size / 1e6:.1f} MB on disk")
    ds = datasets.load_dataset(str(folder), cache_dir=str(root / "hf-cache")).with_format("numpy")
    return {"folder": folder, "ds": ds, "seconds": seconds}


def test_dtype_and_sensor_are_tonics_shd():
    tonic = pytest.importorskip("tonic")
    ds = SyntheticSHD("train")
    assert ds.dtype == tonic.datasets.SHD.dtype and ds.sensor_size == tonic.datasets.SHD.sensor_size
    assert [len(SyntheticSHD(s)) for s in ("train", "validation", "test")] == [2400, 300, 300]
    assert len(ds.classes) >= 10 and len(set(ds.classes)) == len(ds.classes)
    counts = []
    for i in range(0, 2400, 12):
        events, label = ds[i]
        assert events.dtype == tonic.datasets.SHD.dtype and 0 <= label < 10
        assert (np.diff(events["t"]) >= 0).all() and events["t"].min() >= 0 and events["t"].max() < 1_300_000
        assert events["x"].min() >= 0 and events["x"].max() < 700 and (events["p"] == 1).all()
        counts.append(len(events))
    assert 200 <= min(counts) and max(counts) <= 600, (min(counts), max(counts))


def test_deterministic_and_random_access():
    a, b = SyntheticSHD("train", seed=1), SyntheticSHD("train", seed=1)
    late_first = a[7]
    for i in (3, 7, 0):
        ea, la = a[i]
        eb, lb = b[i]
        np.testing.assert_array_equal(ea, eb)
        assert la == lb
    np.testing.assert_array_equal(late_first[0], b[7][0])
    assert not np.array_equal(SyntheticSHD("train", seed=2)[7][0], late_first[0])
    assert not np.array_equal(SyntheticSHD("test", seed=1)[7][0], late_first[0])
    np.testing.assert_array_equal(a.speaker, b.speaker)


def test_labels_are_balanced_in_every_split():
    for split, per_class in (("train", 240), ("validation", 30), ("test", 30)):
        targets = SyntheticSHD(split).targets
        assert np.bincount(targets, minlength=10).tolist() == [per_class] * 10


def test_class_orders_are_even_permutations_three_apart():
    for num_classes, k in ((10, 4), (12, 4), (13, 5), (24, 5)):
        orders = class_orders(num_classes)
        assert orders.shape == (num_classes, k)
        for row in orders:
            assert sorted(row) == list(range(k))  # every class says every syllable exactly once
        for r1, r2 in itertools.combinations(orders, 2):
            assert (r1 != r2).sum() >= 3
    with pytest.raises(ValueError, match="more syllable orders"):
        class_orders(13, num_syllables=4)
    with pytest.raises(ValueError, match="at least 2"):
        class_orders(1)


def test_option_errors(tmp_path):
    with pytest.raises(TypeError, match="unknown synthetic dataset option"):
        SyntheticSHD("train", bogus=1)
    with pytest.raises(ValueError, match="split must be one of"):
        SyntheticSHD("dev")
    with pytest.raises(IndexError, match="outside the test split"):
        SyntheticSHD("test")[300]
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty"):
        make_synthetic_dataset(tmp_path / "out", **TINY)
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"


def test_embedded_dataset_is_built_in_seconds_in_the_hub_layout(embedded):
    folder, ds = embedded["folder"], embedded["ds"]
    assert embedded["seconds"] < 90  # ~3 s on an idle 2-core box; generous for a loaded CI machine
    assert {k: len(v) for k, v in ds.items()} == {"train": 2400, "validation": 300, "test": 300}
    source = SyntheticSHD("validation")
    for i in (0, 123, 299):
        events, label = source[i]
        row = ds["validation"][i]
        np.testing.assert_array_equal(row["t"], events["t"])
        np.testing.assert_array_equal(row["x"], events["x"])
        assert (row["p"] == 0).all() and (row["y"] == 0).all() and row["label"] == label
        assert row["speaker"] == source.speaker[i]
    assert row["t"].dtype == np.int64
    meta = yaml.safe_load((folder / "README.md").read_text().split("---")[1])
    assert meta["license"] == "apache-2.0" and meta["eventlm"]["sensor_size"] == [700, 1, 1]
    assert meta["eventlm"]["generator"]["seed"] == 0 and meta["eventlm"]["generator"]["num_classes"] == 10
    assert (folder / "samples.png").is_file()


def test_bag_of_channels_is_near_chance_on_the_embedded_dataset(embedded):
    ds = embedded["ds"]
    accuracy = bag_of_channels_accuracy(ds["train"], ds["test"], num_channels=700)
    print(f"\nbag-of-channels accuracy: {accuracy:.3f} (chance 0.100)")
    assert accuracy < 2 * 0.1


def test_bag_of_channels_finds_classes_that_live_in_the_counts():
    """The same baseline separates a dataset whose classes differ by channel band (it is not broken)."""
    rng = np.random.default_rng(0)

    def split(n):
        labels = rng.integers(0, 5, n)
        return [({"x": np.clip(rng.normal(100 * c + 50, 20, 80), 0, 699).astype(int)}, c) for c in labels]

    assert bag_of_channels_accuracy(split(200), split(100), num_channels=700) > 0.95


def time_binned_histograms(split, time_bins=8, channel_bins=4):
    """Per sample: event fractions in (time bin, channel band), time relative to the 5–95 % event-time span."""
    feats = []
    for t, x in zip(split["t"], split["x"]):
        lo, hi = np.percentile(t, [5, 95])
        rel = np.clip((t - lo) / max(hi - lo, 1.0), 0.0, 0.999)
        h = np.zeros((time_bins, channel_bins))
        np.add.at(h, ((rel * time_bins).astype(int), x * channel_bins // 700), 1.0)
        feats.append(h.ravel() / h.sum())
    return np.array(feats)


def test_an_order_aware_statistic_separates_the_classes(embedded):
    """Nearest centroid on time-binned channel histograms: the class is learnable from the order of events."""
    ds = embedded["ds"]
    first = ds["train"].select(range(600))  # 60 per class are plenty for centroids
    train, test = time_binned_histograms(first), time_binned_histograms(ds["test"])
    y_train, y_test = np.asarray(first["label"]), np.asarray(ds["test"]["label"])
    centroids = np.stack([train[y_train == c].mean(axis=0) for c in range(10)])
    predicted = ((test[:, None, :] - centroids[None]) ** 2).sum(-1).argmin(axis=1)
    accuracy = float(np.mean(predicted == y_test))
    print(f"\nnearest centroid on time-binned histograms: {accuracy:.3f}")
    assert accuracy >= 0.9


def test_softmax_regression_matches_scikit_learn():
    sklearn = pytest.importorskip("sklearn.linear_model")
    rng = np.random.default_rng(1)
    X = rng.normal(size=(300, 6))
    y = (X @ rng.normal(size=(6, 4)) + rng.normal(scale=2.0, size=(300, 4))).argmax(axis=1)
    for l2 in (0.5, 5.0):
        W = fit_softmax_regression(X, y, 4, l2=l2)
        z = np.hstack([X, np.ones((300, 1))]) @ W
        ours = np.exp(z - z.max(axis=1, keepdims=True))
        ours /= ours.sum(axis=1, keepdims=True)
        ref = sklearn.LogisticRegression(C=1.0 / l2, tol=1e-8, max_iter=1000).fit(X, y).predict_proba(X)
        np.testing.assert_allclose(ours, ref, atol=2e-4)


def test_channel_counts_from_every_kind_of_split():
    rng = np.random.default_rng(2)
    xs = [rng.integers(0, 9, int(rng.integers(0, 30))) for _ in range(12)]
    labels = rng.integers(0, 3, 12)
    reference = np.zeros((12, 9))
    for i, x in enumerate(xs):
        for channel in x:
            reference[i, channel] += 1
    hub = datasets.Dataset.from_dict({"x": [x.astype(np.int16) for x in xs], "label": labels})
    cases = {
        "dataset": (hub, reference, labels),
        "numpy dataset": (hub.with_format("numpy"), reference, labels),
        "dict": ({"x": xs, "label": labels}, reference, labels),
        "pairs": ([({"x": x}, int(lab)) for x, lab in zip(xs, labels)], reference, labels),
    }
    order = rng.permutation(12)[:7]
    cases["selected view"] = (hub.select(order), reference[order], labels[order])
    for name, (split, ref, ref_labels) in cases.items():
        counts, got_labels = channel_counts(split, 9)
        np.testing.assert_array_equal(counts, ref, err_msg=name)
        np.testing.assert_array_equal(got_labels, ref_labels, err_msg=name)
    with pytest.raises(ValueError, match="channel 8 is outside num_channels=8"):
        channel_counts({"x": [np.array([1, 8])], "label": [0]}, 8)


def test_load_synthetic_dataset_builds_once(tmp_path, monkeypatch):
    ds = load_synthetic_dataset(tmp_path, **TINY)
    assert {k: len(v) for k, v in ds.items()} == {"train": 40, "validation": 10, "test": 10}
    assert ds["train"][0]["t"].dtype == np.int64 and ds["train"].format["type"] == "numpy"
    first = SyntheticSHD("train", **TINY)[0][0]
    np.testing.assert_array_equal(ds["train"][0]["t"], first["t"])

    def fail(*args, **kwargs):
        raise AssertionError("rebuilt although the build is cached")

    monkeypatch.setattr(synthetic, "make_synthetic_dataset", fail)
    again = load_synthetic_dataset(tmp_path, **TINY)
    np.testing.assert_array_equal(again["test"][3]["x"], ds["test"][3]["x"])
    assert synthetic.synthetic_dataset_path(tmp_path, **TINY) != synthetic.synthetic_dataset_path(tmp_path, seed=1, **TINY)


def test_builds_are_byte_identical(tmp_path):
    a = make_synthetic_dataset(tmp_path / "a", seed=5, num_classes=3, samples_per_class=4)
    b = make_synthetic_dataset(tmp_path / "b", seed=5, num_classes=3, samples_per_class=4)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    for f in files:
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
