"""EventCollator (bucketed padding, labels, soft labels, next-event targets), slice_by_event_count against
tonic's own slicer, and the data benchmark's functions."""

import numpy as np
import pytest

from eventlm.data.collator import EventCollator, bucket_lengths, slice_by_event_count
from eventlm.data.events import EVENT_DTYPE, EventStream
from eventlm.tokenization_events import EventTokenizer


def row(n, seed, sensor=(700, 1, 1), label=None, **extra):
    """A Hub dataset row: t/x/(y)/p lists and a label."""
    rng = np.random.default_rng(seed)
    W, H, P = sensor
    r = {"t": (100 + np.cumsum(rng.integers(0, 30, n))).tolist(), "x": rng.integers(0, W, n).tolist()}
    if H > 1:
        r["y"] = rng.integers(0, H, n).tolist()
    r["p"] = (rng.integers(0, P, n) if P > 1 else np.ones(n, int)).tolist()
    if label is not None:
        r["label"] = label
    return r | extra


@pytest.fixture(scope="module")
def shd():
    return EventTokenizer.from_pretrained("shd")


def test_bucket_lengths():
    assert bucket_lengths(1024, 65536) == [1024, 2048, 4096, 8192, 16384, 32768, 65536]
    assert bucket_lengths(1000, 5000) == [1000, 2000, 4000, 5000]  # capped by max_length
    assert bucket_lengths(None, 5) == [1, 2, 4, 5]
    assert bucket_lengths(16, None, up_to=100) == [16, 32, 64, 128]
    with pytest.raises(ValueError, match="multiple"):
        bucket_lengths(1024, 3000)
    with pytest.raises(ValueError, match="pad_to_multiple_of"):
        bucket_lengths(0, 1024)


def test_collate_hub_rows_classification(shd):
    rows = [row(n, seed=n, label=n % 20) for n in (30, 5, 17, 0)]
    col = EventCollator(shd, pad_to_multiple_of=8, max_length=256)
    batch = col(rows)
    assert set(batch) == {"input_ids", "timestamps", "attention_mask", "labels"}
    assert batch["input_ids"].shape == (4, 32)  # longest 30 -> bucket 32 of 8, 16, 32, ...
    assert batch["input_ids"].dtype == np.int32 and batch["timestamps"].dtype == np.int64
    assert batch["attention_mask"].dtype == np.int32
    assert batch["labels"].dtype == np.int32 and batch["labels"].tolist() == [10, 5, 17, 0]
    for i, r in enumerate(rows):  # every row equals the tokenizer's own output, then padding
        n = len(r["t"])
        assert batch["input_ids"][i, :n].tolist() == r["x"]
        assert batch["timestamps"][i, :n].tolist() == [t - r["t"][0] for t in r["t"]]
        assert batch["attention_mask"][i].tolist() == [1] * n + [0] * (32 - n)
        assert (batch["input_ids"][i, n:] == shd.pad_token_id).all()
    assert batch["input_ids"][3].tolist() == [shd.pad_token_id] * 32  # an empty sample is all padding


def test_bucketing_bounds_the_number_of_shapes(shd):
    col = EventCollator(shd, pad_to_multiple_of=16, max_length=1024)
    rng = np.random.default_rng(0)
    shapes = set()
    for b in range(60):
        lengths = rng.integers(1, 1500, size=3)
        batch = col([row(int(n), seed=b * 3 + k, label=1) for k, n in enumerate(lengths)])
        L = batch["input_ids"].shape[1]
        assert L >= min(int(lengths.max()), 1024)
        assert (batch["attention_mask"].sum(1) == np.minimum(lengths, 1024)).all()  # long ones are cut
        shapes.add(L)
    assert shapes <= set(bucket_lengths(16, 1024)) and len(shapes) <= 7
    unbucketed = EventCollator(shd, pad_to_multiple_of=16, buckets=False)
    assert unbucketed([row(33, 1)])["input_ids"].shape == (1, 48)
    assert EventCollator(shd, pad_to_multiple_of=16)([row(33, 1)])["input_ids"].shape == (1, 64)


def test_truncation_side_and_refusal(shd):
    r = row(40, seed=3, label=2)
    right = EventCollator(shd, pad_to_multiple_of=4, max_length=8)([r])
    assert right["input_ids"][0].tolist() == r["x"][:8]
    left_tok = EventTokenizer.from_pretrained("shd", truncation_side="left")
    left = EventCollator(left_tok, pad_to_multiple_of=4, max_length=8)([r])
    assert left["input_ids"][0].tolist() == r["x"][-8:]
    with pytest.raises(ValueError, match="more than max_length"):
        EventCollator(shd, max_length=8, truncation=False)([r])
    with pytest.raises(ValueError, match="not a multiple"):
        EventCollator(shd, pad_to_multiple_of=16, max_length=40)


def test_soft_labels(shd):
    soft = [0.25, 0.75, 0.0]
    batch = EventCollator(shd)([row(4, 1, soft_label=soft), row(6, 2, label=[0.0, 0.0, 1.0])])
    assert batch["labels"].dtype == np.float32 and batch["labels"].shape == (2, 3)
    np.testing.assert_allclose(batch["labels"], [soft, [0, 0, 1]])
    mixed = EventCollator(shd, num_labels=3)([row(4, 1, soft_label=soft), row(6, 2, label=1)])
    np.testing.assert_allclose(mixed["labels"], [soft, [0, 1, 0]])  # an integer label becomes its one-hot row
    with pytest.raises(ValueError, match="one length"):
        EventCollator(shd)([row(4, 1, soft_label=[0.5, 0.5]), row(4, 2, soft_label=[1.0, 0, 0])])
    with pytest.raises(ValueError, match="num_labels=4"):
        EventCollator(shd, num_labels=4)([row(4, 1, soft_label=soft)])
    with pytest.raises(ValueError, match="finite"):
        EventCollator(shd)([row(4, 1, soft_label=[np.nan, 1.0])])


def test_label_errors(shd):
    with pytest.raises(ValueError, match="label 20, outside"):
        EventCollator(shd, num_labels=20)([row(3, 1, label=20)])
    with pytest.raises(ValueError, match="label -1"):
        EventCollator(shd)([row(3, 1, label=-1)])
    with pytest.raises(ValueError, match="sample 1 has no 'label'"):
        EventCollator(shd)([row(3, 1, label=0), row(3, 2)])
    assert "labels" not in EventCollator(shd)([row(3, 1), row(4, 2)])  # inference batches carry no labels
    with pytest.raises(ValueError, match="sample 1: events field 'x' has value 700"):
        EventCollator(shd)([row(3, 1), row(3, 2) | {"x": [1, 700, 2]}])
    with pytest.raises(ValueError, match="non-empty list"):
        EventCollator(shd)([])
    with pytest.raises(ValueError, match="task"):
        EventCollator(shd, task="regression")


def test_next_event_targets(shd):
    rows = [row(5, 1), row(2, 2)]
    batch = EventCollator(shd, task="next-event", pad_to_multiple_of=4)(rows)
    ids, mask, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
    assert ids.shape == (2, 8)  # 5 events + bos + eos = 7 -> bucket 8
    assert ids[0, 0] == shd.bos_token_id and ids[0, 6] == shd.eos_token_id and ids[0, 1:6].tolist() == rows[0]["x"]
    assert labels.dtype == ids.dtype
    np.testing.assert_array_equal(labels[mask == 1], ids[mask == 1])
    assert (labels[mask == 0] == -100).all() and (mask.sum(1) == [7, 4]).all()
    plain = EventCollator(shd, task="next-event", add_special_tokens=False)(rows)
    assert plain["input_ids"][0, :5].tolist() == rows[0]["x"]


def test_already_tokenized_samples(shd):
    enc = [dict(shd(row(n, seed=n))) | {"label": k} for k, n in enumerate((3, 9))]
    batch = EventCollator(shd, pad_to_multiple_of=4)(enc)
    assert batch["input_ids"].shape == (2, 16) and batch["labels"].tolist() == [0, 1]
    assert batch["input_ids"][1, :9].tolist() == enc[1]["input_ids"]
    cut = EventCollator(shd, pad_to_multiple_of=4, max_length=4)(enc)
    assert cut["input_ids"][1].tolist() == enc[1]["input_ids"][:4]
    with pytest.raises(ValueError, match="vocabulary|integers in"):
        EventCollator(shd)([{"input_ids": [703], "timestamps": [0]}])
    with pytest.raises(ValueError, match="no timestamps"):
        EventCollator(shd)([{"input_ids": [1]}])


# ------------------------------------------------------------------ slicing


@pytest.mark.parametrize("n", [0, 1, 7, 64, 65, 100, 130, 257])
@pytest.mark.parametrize("overlap", [0.0, 0.5, 0.25])
@pytest.mark.parametrize("include_incomplete", [True, False])
def test_slices_match_tonic(n, overlap, include_incomplete):
    from tonic.slicers import SliceByEventCount

    length = 64
    ev = np.zeros(n, EVENT_DTYPE)
    ev["t"] = np.arange(n)
    ev["x"] = np.arange(n) % 100
    ours = slice_by_event_count(ev, length, overlap, include_incomplete=include_incomplete)
    theirs, _ = SliceByEventCount(event_count=length, overlap=int(round(overlap * length)),
                                  include_incomplete=include_incomplete).slice(ev, 0)
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        np.testing.assert_array_equal(a, b)


def test_slicing_rows_streams_and_dataset_map():
    r = row(100, 5, label=7, speaker=3)
    windows = slice_by_event_count(r, 40, 0.5)
    assert [len(w["t"]) for w in windows] == [40, 40, 40, 40]  # starts 0, 20, 40, 60 (the last one shorter)
    assert windows[1]["x"] == r["x"][20:60] and windows[3]["t"] == r["t"][60:]
    assert all(w["label"] == 7 and w["speaker"] == 3 for w in windows)
    s = EventStream(np.zeros(10, EVENT_DTYPE), (4, 4, 2))
    out = slice_by_event_count(s, 4, 0.0)
    assert all(isinstance(w, EventStream) and w.sensor_size == (4, 4, 2) for w in out) and len(out) == 3
    with pytest.raises(ValueError, match="fraction"):
        slice_by_event_count(r, 40, 20)
    with pytest.raises(ValueError, match="length"):
        slice_by_event_count(r, 0)

    from datasets import Dataset

    ds = Dataset.from_dict({k: [row(100, 5)[k], row(30, 6)[k]] for k in ("t", "x", "p")} | {"label": [7, 8]})
    sliced = ds.map(slice_by_event_count, batched=True, fn_kwargs={"length": 40, "overlap": 0.5})
    assert sliced["label"] == [7, 7, 7, 7, 8] and [len(t) for t in sliced["t"]] == [40, 40, 40, 40, 30]
    assert sliced[2]["x"] == ds[0]["x"][40:80]


# ------------------------------------------------------------------ benchmark functions


def test_benchmark_functions_run_on_small_streams(capsys):
    from eventlm.data import benchmark

    ev = benchmark.synthetic_stream(1000, (128, 128, 2))
    assert ev.dtype.names == ("x", "y", "p", "t") and (np.diff(ev["t"]) >= 0).all()
    assert benchmark.synthetic_stream(10, (700, 1, 1)).dtype.names == ("t", "x", "p")
    rows = benchmark.benchmark_synthetic(2000, repeat=1, batch_size=4)
    assert len(rows) == 4 and all(wall > 0 and cpu > 0 for *_, (wall, cpu) in rows)
    table = benchmark.format_table(rows, benchmark.machine_description())
    assert "M ev/s CPU" in table and "tokenize" in table


def test_pin_to_one_core_pins_every_thread():
    """Threads started before the call (BLAS and XLA workers start at import) end up on the one core too;
    run in a child process so that the test process keeps its cores."""
    import os
    import subprocess
    import sys

    if not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs Linux and at least two usable cores")
    code = (
        "import os, threading, time\n"
        "from pathlib import Path\n"
        "from eventlm.data.benchmark import pin_to_one_core\n"
        "stop = threading.Event(); t = threading.Thread(target=stop.wait); t.start(); time.sleep(0.05)\n"
        "core = pin_to_one_core()\n"
        "masks = {int(d.name): os.sched_getaffinity(int(d.name)) for d in Path('/proc/self/task').iterdir()}\n"
        "stop.set(); t.join()\n"
        "assert len(masks) >= 2 and all(m == {core} for m in masks.values()), (core, masks)\n"
        "print('pinned', core, len(masks))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.startswith("pinned"), result.stderr[-2000:]


def test_benchmark_script_main(realdata, capsys):
    import importlib.util
    from pathlib import Path

    pytest.importorskip("eventlm.data.readers", reason="eventlm.data.readers (read_events) is not there yet")
    path = Path(__file__).resolve().parents[1] / "scripts" / "benchmark_data.py"
    spec = importlib.util.spec_from_file_location("benchmark_data", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rows = module.main(["--events", "2000", "--repeat", "1", "--all-cores", "--realdata", str(realdata)])
    assert {what for what, *_ in rows} >= {"read", "tokenize", "collate 8 copies", "tokenize 1 stream"}
    assert "benchmark on:" in capsys.readouterr().out
