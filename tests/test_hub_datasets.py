"""Hub datasets: tonic datasets and event folders -> parquet shards + card -> datasets.load_dataset, event for event.

The SHD and DVSGesture inputs are written in tonic's own on-disk layouts, so the real tonic classes read
them offline (their download step is skipped because the files are where it looks for them).
"""

import json
import os
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml

datasets = pytest.importorskip("datasets")
tonic = pytest.importorskip("tonic")
h5py = pytest.importorskip("h5py")

from eventlm.data.events import EVENT_DTYPE, EventStream, as_events  # noqa: E402
from eventlm.data.hub import (  # noqa: E402
    folder_to_hub_dataset,
    load_dataset_metadata,
    push_dataset_to_hub,
    to_hub_dataset,
    tonic_to_hub_dataset,
)
from eventlm.data.synthetic import SyntheticSHD  # noqa: E402

SMALL = dict(num_classes=10, samples_per_class=8)  # 6 train, 1 validation, 1 test samples per class
FIELDS = ("t", "x", "y", "p")


# ---------------------------------------------------------------------------------------------------------
# tonic's on-disk layouts
# ---------------------------------------------------------------------------------------------------------


def write_tonic_shd(dataset, save_to: Path, train: bool):
    """Samples in tonic's SHD layout: <save_to>/SHD/shd_{train,test}.h5 (spikes/times in s, spikes/units,
    labels, extra/keys, extra/speaker) beside the .h5.zip that tonic downloads (it only checks that it exists)."""
    folder = save_to / "SHD"
    folder.mkdir(parents=True, exist_ok=True)
    name = "shd_train.h5" if train else "shd_test.h5"
    n = len(dataset)
    with h5py.File(folder / name, "w") as f:
        times = f.create_dataset("spikes/times", (n,), dtype=h5py.vlen_dtype(np.float64))
        units = f.create_dataset("spikes/units", (n,), dtype=h5py.vlen_dtype(np.uint16))
        labels = np.zeros(n, np.uint16)
        for i in range(n):
            events, labels[i] = dataset[i]
            times[i] = (events["t"] + 0.5) / 1e6  # seconds; +0.5 µs so that tonic's int() gives back t
            units[i] = events["x"]
        f["labels"] = labels
        f["extra/keys"] = np.array([c.encode() for c in dataset.classes])
        f["extra/speaker"] = dataset.speaker.astype(np.uint16)
    with zipfile.ZipFile(folder / f"{name}.zip", "w") as z:
        z.write(folder / name, name)


def write_tonic_dvsgesture(save_to: Path, rng) -> Path:
    """100 tiny recordings in tonic's DVSGesture layout: ibmGestureTrain/user{NN}_{lighting}/{label}.npy
    holding (N, 4) rows x, y, p, t in ms, beside the ibmGestureTrain.tar.gz that tonic checks for."""
    root = save_to / "DVSGesture"
    for user in range(1, 6):
        for lighting in ("fluorescent", "led"):
            folder = root / "ibmGestureTrain" / f"user{user:02d}_{lighting}"
            folder.mkdir(parents=True)
            for label in range(10):
                n = int(rng.integers(5, 40))
                rows = np.stack([rng.integers(0, 128, n), rng.integers(0, 128, n), rng.integers(0, 2, n),
                                 np.sort(rng.integers(0, 5000, n))], axis=1).astype(np.int64)
                np.save(folder / f"{label}.npy", rows)
    with tarfile.open(root / "ibmGestureTrain.tar.gz", "w:gz") as tar:
        tar.add(root / "ibmGestureTrain", arcname="ibmGestureTrain")
    return save_to


class ListDataset:
    """A tonic-like dataset over a list of (events, target)."""

    def __init__(self, items, sensor_size=(700, 1, 1), classes=None, fail_at=None):
        self.items, self.sensor_size, self.fail_at = items, sensor_size, fail_at
        if classes is not None:
            self.classes = classes

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        if i == self.fail_at:
            raise RuntimeError(f"injected failure at sample {i}")
        return self.items[i]


def shd_events(rng, n=50, width=700):
    e = np.zeros(n, SyntheticSHD.dtype)
    e["t"] = np.sort(rng.integers(0, 10**6, n))
    e["x"] = rng.integers(0, width, n)
    e["p"] = 1
    return e


def load(folder, tmp_path, **kw):
    return datasets.load_dataset(str(folder), cache_dir=str(tmp_path / "hf-cache"), **kw)


def assert_split_equal(source, split, sensor_size, metadata=()):
    """Every row of the loaded split equals as_events(source[i]) field by field; Arrow types are the schema's."""
    import pyarrow as pa

    assert len(split) == len(source)
    for name in FIELDS:  # datasets' numpy format hands out int64 for every integer; the stored type is exact
        assert split.data.schema.field(name).type == pa.list_(pa.from_numpy_dtype(EVENT_DTYPE[name]))
    rows = split.with_format("numpy")
    for i in range(len(source)):
        events, target = source[i]
        ref = as_events(events, sensor_size)
        row = rows[i]
        for name in FIELDS:
            np.testing.assert_array_equal(row[name], ref[name], err_msg=f"sample {i} field {name}")
        assert int(row["label"]) == int(target)
        for key, values in metadata:
            assert row[key] == values[i], (key, i)


def ls(folder: Path):
    return sorted(p.name for p in folder.iterdir())


# ---------------------------------------------------------------------------------------------------------
# SHD through tonic
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shd(tmp_path_factory):
    """tonic.datasets.SHD reading synthetic recordings written in its own layout, and their conversion."""
    root = tmp_path_factory.mktemp("tonic")
    originals = {"train": SyntheticSHD("train", seed=3, **SMALL), "test": SyntheticSHD("test", seed=3, **SMALL)}
    write_tonic_shd(originals["train"], root, train=True)
    write_tonic_shd(originals["test"], root, train=False)
    splits = {"train": tonic.datasets.SHD(save_to=str(root), train=True),
              "test": tonic.datasets.SHD(save_to=str(root), train=False)}
    out = tmp_path_factory.mktemp("hub") / "shd-events"
    tonic_to_hub_dataset(splits, out, samples_per_shard=16, license="cc-by-4.0", pretty_name="SHD test copy")
    return {"originals": originals, "tonic": splits, "folder": out, "root": root}


def test_tonic_reads_the_shd_layout_offline(shd):
    train, original = shd["tonic"]["train"], shd["originals"]["train"]
    assert len(train) == 60 and len(shd["tonic"]["test"]) == 10
    assert [c.decode() for c in train.classes] == original.classes
    events, target = train[7]
    ref, ref_target = original[7]
    assert events.dtype == tonic.datasets.SHD.dtype and target == ref_target
    np.testing.assert_array_equal(events["t"], ref["t"])
    np.testing.assert_array_equal(events["x"], ref["x"])
    assert (events["p"] == 1).all()  # tonic's artificial polarity


def test_shd_converts_and_loads_back_event_for_event(shd, tmp_path):
    ds = load(shd["folder"], tmp_path)
    assert list(ds) == ["train", "test"]
    feats = ds["train"].features
    assert feats["t"].feature.dtype == "int64" and feats["x"].feature.dtype == "int16"
    assert feats["y"].feature.dtype == "int16" and feats["p"].feature.dtype == "int8"
    assert feats["label"].names == shd["originals"]["train"].classes
    for name in ("train", "test"):
        source = shd["tonic"][name]
        assert_split_equal(source, ds[name], (700, 1, 1), metadata=[("speaker", source.speaker)])
    assert (np.concatenate(ds["train"].with_format("numpy")["p"]) == 0).all()  # one polarity: p carries nothing


def test_shd_loads_back_with_streaming(shd, tmp_path):
    ds = load(shd["folder"], tmp_path, streaming=True)
    source = shd["tonic"]["test"]
    rows = list(ds["test"])
    assert len(rows) == len(source)
    for i, row in enumerate(rows):
        ref = as_events(source[i][0], (700, 1, 1))
        for name in FIELDS:
            np.testing.assert_array_equal(np.asarray(row[name]), ref[name])
        assert row["label"] == source[i][1] and row["speaker"] == source.speaker[i]


def test_shards_card_and_picture(shd):
    folder = shd["folder"]
    assert ls(folder) == ["README.md", "data", "samples.png"]
    assert ls(folder / "data") == [f"test-00000-of-00001.parquet"] + [f"train-{i:05d}-of-00004.parquet" for i in range(4)]
    text = (folder / "README.md").read_text()
    meta = yaml.safe_load(text.split("---")[1])
    assert meta["license"] == "cc-by-4.0"
    assert {"neuromorphic", "event-audio", "eventlm"} <= set(meta["tags"])
    assert meta["task_categories"] == ["audio-classification"]
    assert meta["eventlm"]["sensor_size"] == [700, 1, 1] and meta["eventlm"]["time_unit"] == "us"
    splits = {s["name"]: s["num_examples"] for s in meta["dataset_info"]["splits"]}
    assert splits == {"train": 60, "test": 10}
    label = [f for f in meta["dataset_info"]["features"] if f["name"] == "label"][0]
    assert list(label["dtype"]["class_label"]["names"].values()) == shd["originals"]["train"].classes
    assert meta["configs"][0]["data_files"] == [{"split": "train", "path": "data/train-*"},
                                                {"split": "test", "path": "data/test-*"}]
    assert "](samples.png)" in text and "SHD test copy" in text
    assert (folder / "samples.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    info = load_dataset_metadata(str(folder))
    assert info["sensor_size"] == (700, 1, 1) and info["sensor_type"] == "audio"
    assert info["class_names"] == shd["originals"]["train"].classes and info["splits"] == splits


def test_loads_by_repo_id_through_a_loopback_hub_mirror(shd, tmp_path):
    """olah serves the converted folder as a git repo; datasets loads it by repo id (normal and streaming)."""
    import shutil

    pytest.importorskip("olah")
    if shutil.which("git") is None:
        pytest.skip("the Hub mirror serves git repositories: git is not installed")
    from hub_mirror import HubMirror

    client = (
        "import json, numpy as np, datasets\n"
        "out = {}\n"
        "for streaming in (False, True):\n"
        "    ds = datasets.load_dataset('eventlm-tests/shd-events', streaming=streaming)\n"
        "    out[str(streaming)] = {s: [{k: np.asarray(r[k]).tolist() for k in ('t','x','y','p','label','speaker')}\n"
        "                              for r in ds[s]] for s in ds}\n"
        "from eventlm.data.hub import load_dataset_metadata\n"
        "out['meta'] = load_dataset_metadata('eventlm-tests/shd-events')\n"
        "json.dump(out, open('rows.json', 'w'))\n"
    )
    with HubMirror(tmp_path) as hub:
        hub.add_repo("eventlm-tests/shd-events", shd["folder"])
        hub.run_client(client)
    got = json.loads((tmp_path / "rows.json").read_text())
    assert got["meta"]["sensor_size"] == [700, 1, 1] and got["meta"]["splits"] == {"train": 60, "test": 10}
    local = load(shd["folder"], tmp_path).with_format("numpy")
    for streaming in ("False", "True"):
        assert set(got[streaming]) == {"train", "test"}
        for split, rows in got[streaming].items():
            assert len(rows) == len(local[split])
            for i, row in enumerate(rows):
                ref = local[split][i]
                for key in ("t", "x", "y", "p", "label", "speaker"):
                    np.testing.assert_array_equal(np.asarray(row[key]), ref[key], err_msg=f"{streaming} {split} {i} {key}")


# ---------------------------------------------------------------------------------------------------------
# DVSGesture through tonic, event folders
# ---------------------------------------------------------------------------------------------------------


def test_dvsgesture_converts_with_user_lighting_and_source(tmp_path):
    root = write_tonic_dvsgesture(tmp_path / "tonic", np.random.default_rng(1))
    gesture = tonic.datasets.DVSGesture(save_to=str(root), train=True)
    assert len(gesture) == 100
    out = to_hub_dataset(gesture, tmp_path / "gesture", samples_per_shard=40)
    ds = load(out, tmp_path)
    assert list(ds) == ["train"]
    sources = [Path(p).relative_to(gesture.location_on_system).as_posix() for p in gesture.data]
    assert_split_equal(gesture, ds["train"], (128, 128, 2),
                       metadata=[("user", gesture.users), ("lighting", gesture.lighting), ("source", sources)])
    assert ds["train"].features["label"].names == list(gesture.classes)
    p = np.concatenate(ds["train"].with_format("numpy")["p"])
    assert set(np.unique(p)) == {0, 1}  # bool polarity -> int8
    meta = load_dataset_metadata(str(out))
    assert meta["sensor_size"] == (128, 128, 2) and meta["sensor_type"] == "camera"
    assert "event-camera" in yaml.safe_load((out / "README.md").read_text().split("---")[1])["tags"]


def dvs_events(rng, n):
    e = np.zeros(n, np.dtype([("x", np.int16), ("y", np.int16), ("p", bool), ("t", np.int64)]))  # tonic's order
    e["x"], e["y"] = rng.integers(0, 32, n), rng.integers(0, 24, n)
    e["p"], e["t"] = rng.integers(0, 2, n).astype(bool), np.sort(rng.integers(0, 10**5, n))
    return e


def test_event_folder_with_split_folders(tmp_path):
    rng = np.random.default_rng(2)
    folder = tmp_path / "recordings"
    expected = {}
    for split in ("train", "val", "test"):
        for cls in ("wave", "clap", "roll"):
            for j in range(2 if split != "train" else 3):
                sub = folder / split / cls / ("nested" if j == 2 else "")
                sub.mkdir(parents=True, exist_ok=True)
                events = dvs_events(rng, int(rng.integers(1, 60)))
                np.save(sub / f"rec{j}.npy", events)
                expected[(split, cls, j)] = events
    (folder / "train" / "wave" / "notes.txt").write_text("not a recording")
    out = folder_to_hub_dataset(folder, tmp_path / "out", sensor_size=(32, 24, 2))
    ds = load(out, tmp_path)
    assert list(ds) == ["train", "validation", "test"]
    names = ds["train"].features["label"].names
    assert names == ["clap", "roll", "wave"]
    for split, folder_name in (("train", "train"), ("validation", "val"), ("test", "test")):
        rows = ds[split].with_format("numpy")
        assert len(rows) == (9 if split == "train" else 6)
        for row in rows:
            cls, *rest = row["source"].split("/")
            j = int(rest[-1][3])
            ref = as_events(expected[(folder_name, cls, j)], (32, 24, 2))
            assert names[row["label"]] == cls
            for name in FIELDS:
                np.testing.assert_array_equal(row[name], ref[name])


def test_event_folder_without_splits_and_with_a_reader(tmp_path):
    """Class folders at the top give one split; `reader` reads a format of one's own (here: text lines t x)."""
    rng = np.random.default_rng(3)
    folder = tmp_path / "cochlea"
    expected = {}
    for cls in ("yes", "no"):
        (folder / cls).mkdir(parents=True)
        for j in range(3):
            t, x = np.sort(rng.integers(0, 10**6, 20)), rng.integers(0, 64, 20)
            (folder / cls / f"r{j}.evt").write_text("\n".join(f"{a} {b}" for a, b in zip(t, x)))
            expected[f"{cls}/r{j}.evt"] = (t, x)
        (folder / cls / "ignored.bin").write_bytes(b"\x00")

    def reader(path, scale=1):
        rows = np.loadtxt(path, dtype=np.int64, ndmin=2)
        return EventStream(as_events({"t": rows[:, 0] * scale, "x": rows[:, 1]}), (64, 1, 1))

    out = folder_to_hub_dataset(folder, tmp_path / "out", reader=reader, reader_options={"scale": 2},
                                extensions=[".evt"], class_names=["no", "yes"])
    ds = load(out, tmp_path)["train"].with_format("numpy")
    assert len(ds) == 6 and ds.features["label"].names == ["no", "yes"]
    for row in ds:
        t, x = expected[row["source"]]
        np.testing.assert_array_equal(row["t"], t * 2)
        np.testing.assert_array_equal(row["x"], x)
        assert ds.features["label"].names[row["label"]] == row["source"].split("/")[0]
    assert load_dataset_metadata(str(out))["sensor_size"] == (64, 1, 1)  # inferred from the recordings


def test_event_folder_errors(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        folder_to_hub_dataset(tmp_path / "missing", tmp_path / "out")
    mixed = tmp_path / "mixed"
    (mixed / "train" / "a").mkdir(parents=True)
    (mixed / "b").mkdir()
    with pytest.raises(ValueError, match="mixes split folders"):
        folder_to_hub_dataset(mixed, tmp_path / "out")
    empty = tmp_path / "empty"
    (empty / "a").mkdir(parents=True)
    with pytest.raises(ValueError, match="no class folders with recordings"):
        folder_to_hub_dataset(empty, tmp_path / "out")
    np.save(empty / "a" / "r.npy", dvs_events(np.random.default_rng(0), 5))
    with pytest.raises(ValueError, match=r"class folder\(s\) \['a'\]"):
        folder_to_hub_dataset(empty, tmp_path / "out", class_names=["b"])
    (empty / "a" / "broken.npy").write_bytes(b"not numpy")
    with pytest.raises(ValueError, match="cannot read .*broken.npy"):
        folder_to_hub_dataset(empty, tmp_path / "out")
    assert ls(tmp_path) == ["empty", "mixed"]  # nothing written


# ---------------------------------------------------------------------------------------------------------
# bad input, atomic writes
# ---------------------------------------------------------------------------------------------------------


def _corrupt(kind, rng):
    e = shd_events(rng)
    if kind == "unsorted":
        e["t"][10], e["t"][11] = e["t"][11] + 5, e["t"][10]
        return e, 0, r"field 't' decreases at index 11"
    if kind == "negative":
        e["t"][0] = -5
        return e, 0, r"field 't' has value -5"
    if kind == "outside":
        e["x"][4] = 700
        return e, 0, r"field 'x' has value 700 at index 4, outside the sensor"
    if kind == "nan":
        return {"t": np.where(np.arange(50) == 3, np.nan, e["t"].astype(float)), "x": e["x"]}, 0, "'t' holds a non-finite value nan"
    if kind == "dtype":
        return {"t": e["t"], "x": np.array(["a"] * 50)}, 0, r"field 'x' has dtype <U1"
    if kind == "fraction":
        return {"t": e["t"], "x": e["x"] + 0.5}, 0, r"field 'x' must hold integers, got \d+\.5 at index 0"
    if kind == "missing":
        return {"t": e["t"]}, 0, "no 'x' field"
    if kind == "label":
        return e, 12, r"label 12 is outside the classes \(must be < 10"
    if kind == "target":
        return e, "yes", "target 'yes' is not an integer class index"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["unsorted", "negative", "outside", "nan", "dtype", "fraction", "missing", "label", "target"])
def test_bad_sample_raises_and_leaves_nothing(kind, tmp_path):
    rng = np.random.default_rng(4)
    items = [(shd_events(rng), i % 10) for i in range(6)]
    items[5] = _corrupt(kind, rng)[:2]
    message = _corrupt(kind, np.random.default_rng(4))[2]
    ds = ListDataset(items, classes=[str(i) for i in range(10)])
    with pytest.raises(ValueError, match=message) as err:
        tonic_to_hub_dataset(ds, tmp_path / "out", samples_per_shard=2)  # shards were already written
    assert "split 'train', sample 5" in str(err.value)
    assert ls(tmp_path) == []


def test_sort_true_sorts_unsorted_events(tmp_path):
    rng = np.random.default_rng(5)
    e = shd_events(rng)
    shuffled = e[rng.permutation(len(e))]
    out = tonic_to_hub_dataset(ListDataset([(shuffled, 1)], classes=["a", "b"]), tmp_path / "out", sort=True)
    row = load(out, tmp_path)["train"].with_format("numpy")[0]
    np.testing.assert_array_equal(row["t"], np.sort(e["t"]))
    order = np.argsort(shuffled["t"], kind="stable")
    np.testing.assert_array_equal(row["x"], shuffled["x"][order])


def test_failure_midway_keeps_the_previous_output(tmp_path):
    rng = np.random.default_rng(6)
    items = [(shd_events(rng), i % 2) for i in range(8)]
    out = tonic_to_hub_dataset(ListDataset(items, classes=["a", "b"]), tmp_path / "out")
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(ValueError, match="not empty; pass overwrite=True"):
        tonic_to_hub_dataset(ListDataset(items, classes=["a", "b"]), out)
    with pytest.raises(RuntimeError, match="injected failure at sample 5"):
        tonic_to_hub_dataset(ListDataset(items, classes=["a", "b"], fail_at=5), out, overwrite=True, samples_per_shard=2)
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
    assert ls(tmp_path) == ["out"]  # no temporary folder left beside it
    # overwrite=True that succeeds replaces it
    tonic_to_hub_dataset(ListDataset(items[:3], classes=["a", "b"]), out, overwrite=True)
    assert len(load(out, tmp_path)["train"]) == 3
    assert sorted(ls(tmp_path)) == ["hf-cache", "out"]


def test_shards_close_at_max_shard_size(tmp_path):
    rng = np.random.default_rng(7)
    items = [(shd_events(rng, n=100), i % 3) for i in range(10)]  # 1300 bytes of events each
    out = tonic_to_hub_dataset(ListDataset(items, classes=["a", "b", "c"]), tmp_path / "out", max_shard_size=3000)
    assert len(ls(out / "data")) == 4  # 3 + 3 + 3 + 1 samples
    assert_split_equal(ListDataset(items), load(out, tmp_path)["train"], (700, 1, 1))


def test_argument_errors(tmp_path):
    ds = ListDataset([(shd_events(np.random.default_rng(8)), 0)], classes=["a"])
    with pytest.raises(TypeError, match="got int"):
        to_hub_dataset(42, tmp_path / "out")
    with pytest.raises(ValueError, match="split name 'my-split'"):
        tonic_to_hub_dataset({"my-split": ds}, tmp_path / "out")
    with pytest.raises(ValueError, match="empty mapping"):
        tonic_to_hub_dataset({}, tmp_path / "out")
    with pytest.raises(ValueError, match="sensor_size must be three positive integers"):
        tonic_to_hub_dataset(ds, tmp_path / "out", sensor_size=(700, 1))
    with pytest.raises(ValueError, match="samples_per_shard"):
        tonic_to_hub_dataset(ds, tmp_path / "out", samples_per_shard=0)
    with pytest.raises(ValueError, match="has no samples"):
        tonic_to_hub_dataset({"train": ds, "test": ListDataset([], classes=["a"])}, tmp_path / "out")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is not a folder"):
        tonic_to_hub_dataset(ds, tmp_path / "file")
    assert ls(tmp_path) == ["file"]


def test_labels_without_class_names_are_numbered(tmp_path):
    rng = np.random.default_rng(9)
    out = tonic_to_hub_dataset(ListDataset([(shd_events(rng), 2), (shd_events(rng), 0)]), tmp_path / "out")
    ds = load(out, tmp_path)["train"]
    assert ds.features["label"].names == ["0", "1", "2"] and ds["label"] == [2, 0]


def test_push_dataset_to_hub_at_the_client_boundary(tmp_path, monkeypatch):
    import huggingface_hub

    calls = []
    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", lambda self, repo_id, **kw: calls.append(("create", repo_id, kw)))
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", lambda self, **kw: calls.append(("upload", kw)) or "commit")
    out = tonic_to_hub_dataset(ListDataset([(shd_events(np.random.default_rng(10)), 0)], classes=["a"]), tmp_path / "out")
    assert push_dataset_to_hub(out, "someone/events", private=True) == "commit"
    (create, repo_id, create_kw), (upload, upload_kw) = calls
    assert repo_id == "someone/events" and create_kw["repo_type"] == "dataset" and create_kw["private"] is True
    assert upload_kw["repo_id"] == "someone/events" and upload_kw["repo_type"] == "dataset"
    assert Path(upload_kw["folder_path"]) == out
    uploaded = [p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()
                and any(Path(p.relative_to(out).as_posix()).match(pat) for pat in upload_kw["allow_patterns"])]
    assert sorted(uploaded) == ["README.md", "data/train-00000-of-00001.parquet", "samples.png"]
    with pytest.raises(ValueError, match="not a converted event dataset"):
        push_dataset_to_hub(tmp_path, "someone/events")


# ---------------------------------------------------------------------------------------------------------
# the conversion scripts (thin shells)
# ---------------------------------------------------------------------------------------------------------


def run_script(name, argv):
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"script_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main(argv)


def test_convert_tonic_dataset_script(shd, tmp_path):
    out = run_script("convert_tonic_dataset", ["--dataset", "SHD", "--save_to", str(shd["root"]), "--splits", "test",
                                               "--output_dir", str(tmp_path / "out"), "--license", "cc-by-4.0"])
    ds = load(out, tmp_path)
    assert list(ds) == ["test"]
    assert_split_equal(shd["tonic"]["test"], ds["test"], (700, 1, 1))
    with pytest.raises(ValueError, match="no split\\(s\\) \\['validation'\\]"):
        run_script("convert_tonic_dataset", ["--dataset", "SHD", "--save_to", str(shd["root"]), "--splits",
                                             "validation", "--output_dir", str(tmp_path / "other")])
    with pytest.raises(ValueError, match="unknown dataset 'NoSuchSet'"):
        run_script("convert_tonic_dataset", ["--dataset", "NoSuchSet", "--save_to", "x", "--output_dir", "y"])
    with pytest.raises(ValueError, match="needs --hub_dataset_id"):
        run_script("convert_tonic_dataset", ["--dataset", "SHD", "--save_to", "x", "--output_dir", "y", "--push_to_hub"])


def test_convert_event_folder_script(tmp_path):
    rng = np.random.default_rng(11)
    items = {}
    for cls in ("left", "right"):
        (tmp_path / "rec" / cls).mkdir(parents=True)
        for j in range(2):
            items[f"{cls}/{j}.npy"] = dvs_events(rng, 30)
            np.save(tmp_path / "rec" / cls / f"{j}.npy", items[f"{cls}/{j}.npy"])
    out = run_script("convert_event_folder", ["--folder", str(tmp_path / "rec"), "--output_dir", str(tmp_path / "out"),
                                              "--sensor_size", "32", "24", "2", "--samples_per_shard", "3"])
    ds = load(out, tmp_path)["train"].with_format("numpy")
    assert len(ds) == 4 and len(ls(out / "data")) == 2
    for row in ds:
        ref = as_events(items[row["source"]])
        for name in FIELDS:
            np.testing.assert_array_equal(row[name], ref[name])
    assert load_dataset_metadata(str(out))["sensor_size"] == (32, 24, 2)


def test_event_folder_of_real_recordings(realdata, tmp_path):
    """A real N-MNIST recording, read with read_events, converts and loads back event for event."""
    import shutil

    from eventlm.data.readers import read_events

    source = realdata / "tonic_test_data" / "sample_nmnist.bin"
    for cls in ("seen", "unseen"):
        (tmp_path / "rec" / cls).mkdir(parents=True)
        shutil.copy(source, tmp_path / "rec" / cls / "sample.bin")
    out = folder_to_hub_dataset(tmp_path / "rec", tmp_path / "out", license="cc-by-sa-4.0")
    stream = read_events(source)
    ds = load(out, tmp_path)["train"].with_format("numpy")
    assert len(ds) == 2 and len(stream.events) > 0
    for row in ds:
        for name in FIELDS:
            np.testing.assert_array_equal(row[name], stream.events[name])
    assert load_dataset_metadata(str(out))["sensor_size"] == tuple(stream.sensor_size)


def test_a_split_without_a_metadata_column_gets_nulls(tmp_path):
    rng = np.random.default_rng(12)
    train = ListDataset([(shd_events(rng), i % 2) for i in range(4)], classes=["a", "b"])
    train.speaker = np.array([3, 1, 4, 1])
    test = ListDataset([(shd_events(rng), 1), (shd_events(rng), 0)], classes=["a", "b"])
    out = tonic_to_hub_dataset({"train": train, "test": test}, tmp_path / "out")
    ds = load(out, tmp_path)
    assert ds["train"]["speaker"] == [3, 1, 4, 1] and ds["test"]["speaker"] == [None, None]
    assert_split_equal(test, ds["test"], (700, 1, 1))
