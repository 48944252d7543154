"""EventTokenizer: token layout against hand-written formulas, input kinds, transformers-style padding and
truncation, the reference switches, decoding, saving/loading/presets/Hub, bad input, and the real recordings."""

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from eventlm.data.events import EVENT_DTYPE, EventStream
from eventlm.tokenization_events import EventTokenizer
from eventlm.resources import data_dir

SHD_DTYPE = [("t", "<i8"), ("x", "<i8"), ("p", "<i8")]  # tonic.datasets.SHD.dtype
DVS_DTYPE = [("x", "<i2"), ("y", "<i2"), ("p", "?"), ("t", "<i8")]  # tonic.datasets.DVSGesture.dtype
NMNIST_DTYPE = [("x", "<i2"), ("y", "<i2"), ("t", "<i8"), ("p", "<i2")]


def stream(n, sensor, dtype=DVS_DTYPE, seed=0, t0=1000):
    """A random sorted stream with a nonzero start time, repeated times and every coordinate in range."""
    rng = np.random.default_rng(seed)
    W, H, P = sensor
    ev = np.empty(n, dtype)
    ev["t"] = t0 + np.cumsum(rng.integers(0, 50, n))
    ev["x"] = rng.integers(0, W, n)
    if "y" in ev.dtype.names:
        ev["y"] = rng.integers(0, H, n)
    ev["p"] = rng.integers(0, P, n) if P > 1 else 1
    return ev


def expected_ids(ev, sensor, downsample=(1, 1), merge=False):
    """Token ids by the documented formula, one event at a time in Python integers."""
    W, H, P = sensor
    fx, fy = downsample
    W2, H2 = -(-W // fx), -(-H // fy)
    ys = ev["y"] if "y" in ev.dtype.names else np.zeros(len(ev), int)
    out = []
    for x, y, p in zip(ev["x"].tolist(), ys.tolist(), ev["p"].tolist()):
        p = 0 if (merge or P == 1) else int(p)
        out.append(p * W2 * H2 + (y // fy) * W2 + x // fx)
    return out


# ------------------------------------------------------------------ token layout


@pytest.mark.parametrize(
    "sensor,downsample,merge",
    [((128, 128, 2), (1, 1), False), ((128, 128, 2), (4, 4), False), ((34, 34, 2), (3, 5), True),
     ((700, 1, 1), (1, 1), False), ((700, 1, 1), (4, 1), False), ((640, 480, 2), (7, 2), False),
     ((64, 2, 2), 1, False), ((20, 10, 3), (1, 2), False), ((20, 10, 3), (3, 1), True)],
)
def test_token_ids_follow_the_formula(sensor, downsample, merge):
    tok = EventTokenizer(sensor, downsample=downsample, merge_polarities=merge)
    dtype = SHD_DTYPE if sensor[1] == 1 else NMNIST_DTYPE if sensor[2] > 2 else DVS_DTYPE
    ev = stream(500, sensor, dtype, seed=sum(sensor))
    if sensor[2] > 2:
        assert ev["p"].max() == sensor[2] - 1  # every polarity occurs
    enc = tok(ev)
    ds = downsample if isinstance(downsample, tuple) else (downsample, downsample)
    assert enc["input_ids"] == expected_ids(ev, sensor, ds, merge)
    assert enc["timestamps"] == (ev["t"] - ev["t"][0]).tolist()
    assert enc["attention_mask"] == [1] * len(ev)
    assert max(enc["input_ids"]) < tok.num_channels


def test_channels_are_unique_and_fill_the_vocabulary():
    """Every (x', y', p') of the channel grid has its own id, and the ids are exactly 0..num_channels-1."""
    for sensor, ds, merge in [((6, 5, 2), (1, 1), False), ((7, 5, 2), (2, 3), False), ((7, 5, 2), (2, 2), True)]:
        tok = EventTokenizer(sensor, downsample=ds, merge_polarities=merge)
        W, H, P = sensor
        x, y, p = np.meshgrid(np.arange(W), np.arange(H), np.arange(P), indexing="ij")
        ids = tok.token_ids(x.ravel(), y.ravel(), p.ravel())
        W2, H2, P2 = tok.channel_size
        assert (W2, H2, P2) == (-(-W // ds[0]), -(-H // ds[1]), 1 if merge else P)
        assert sorted(set(ids.tolist())) == list(range(tok.num_channels))
        pairs = {(int(a) // ds[0], int(b) // ds[1], 0 if merge else int(c)) for a, b, c in zip(x.ravel(), y.ravel(), p.ravel())}
        assert len(pairs) == tok.num_channels  # one id per distinct channel coordinate


def test_special_tokens_follow_the_channels():
    tok = EventTokenizer((128, 128, 2))
    assert tok.num_channels == 32768
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, tok.vocab_size) == (32768, 32769, 32770, 32771)
    assert len(tok) == tok.vocab_size
    shd = EventTokenizer.from_pretrained("shd")
    assert (shd.num_channels, shd.vocab_size) == (700, 703)


# ------------------------------------------------------------------ input kinds


def test_every_input_kind_gives_the_same_tokens():
    sensor = (34, 34, 2)
    ev = stream(300, sensor, EVENT_DTYPE, seed=3)
    tok = EventTokenizer(sensor)
    want = tok(ev, return_tensors="np")["input_ids"][0]
    variants = []
    for order in (DVS_DTYPE, NMNIST_DTYPE, [("t", "<i8"), ("p", "<i1"), ("y", "<i4"), ("x", "<u2")]):
        a = np.empty(len(ev), order)
        for f in ("t", "x", "y", "p"):
            a[f] = ev[f]
        variants.append(a)
    variants += [
        {f: ev[f] for f in ("x", "y", "p", "t")},  # dict of arrays
        {f: ev[f].tolist() for f in ("t", "x", "y", "p")} | {"label": 3},  # Hub row with lists and a label
        EventStream(ev, sensor),
    ]
    for v in variants:
        np.testing.assert_array_equal(tok(v, return_tensors="np")["input_ids"][0], want)
    batch = tok(variants, padding=True, return_tensors="np")
    assert batch["input_ids"].shape == (len(variants), len(ev))
    assert (batch["input_ids"] == want).all()
    columns = {f: [ev[f].tolist(), ev[f][:10].tolist()] for f in ("t", "x", "y", "p")}  # dataset.map(batched=True)
    cols = tok(columns)
    assert cols["input_ids"][0] == want.tolist() and cols["input_ids"][1] == want[:10].tolist()


def test_tonic_shd_polarity_one_is_accepted_and_ignored():
    ev = stream(200, (700, 1, 1), SHD_DTYPE, seed=4)
    assert (ev["p"] == 1).all()
    tok = EventTokenizer.from_pretrained("shd")
    ids = tok(ev)["input_ids"]
    assert ids == ev["x"].tolist()  # audio tokens are the channels


def test_datasets_rows_in_numpy_format():
    from datasets import Dataset

    rows = [stream(n, (700, 1, 1), SHD_DTYPE, seed=n) for n in (5, 9, 1)]
    ds = Dataset.from_dict({f: [r[f].tolist() for r in rows] for f in ("t", "x", "p")} | {"label": [0, 1, 2]})
    tok = EventTokenizer.from_pretrained("shd")
    mapped = ds.map(lambda b: tok(b), batched=True)
    assert mapped["input_ids"] == [r["x"].tolist() for r in rows]
    npds = ds.with_format("numpy")
    np.testing.assert_array_equal(tok(npds[1], return_tensors="np")["timestamps"][0], rows[1]["t"] - rows[1]["t"][0])


# ------------------------------------------------------------------ padding, truncation, tensors


def test_padding_truncation_and_tensor_types():
    sensor = (16, 16, 2)
    tok = EventTokenizer(sensor)
    a, b = stream(7, sensor, seed=1), stream(3, sensor, seed=2)
    ids_a, ids_b = expected_ids(a, sensor), expected_ids(b, sensor)
    ts_b = (b["t"] - b["t"][0]).tolist()

    out = tok([a, b], padding=True)
    assert out["input_ids"] == [ids_a, ids_b + [tok.pad_token_id] * 4]
    assert out["attention_mask"] == [[1] * 7, [1] * 3 + [0] * 4]
    assert out["timestamps"][1] == ts_b + [ts_b[-1]] * 4  # pads repeat the last time: never decreasing

    out = tok([a, b], padding="longest", pad_to_multiple_of=4, return_tensors="np")
    assert out["input_ids"].shape == (2, 8) and out["input_ids"].dtype == np.int32
    assert out["timestamps"].dtype == np.int64 and out["attention_mask"].dtype == np.int32

    out = tok([a, b], padding="max_length", max_length=5, return_tensors="np")  # explicit max_length truncates
    assert out["input_ids"].shape == (2, 5)
    np.testing.assert_array_equal(out["input_ids"][0], ids_a[:5])
    np.testing.assert_array_equal(out["timestamps"][0], a["t"][:5] - a["t"][0])

    left = tok(a, truncation=True, max_length=4, truncation_side="left")
    assert left["input_ids"] == ids_a[-4:]
    assert left["timestamps"] == (a["t"][-4:] - a["t"][0]).tolist()  # still measured from the stream's start
    assert EventTokenizer(sensor, truncation_side="left")(a, max_length=4)["input_ids"] == ids_a[-4:]
    assert tok(a, truncation=False, max_length=4)["input_ids"] == ids_a  # truncation=False keeps everything

    single = tok(a, return_tensors="np")
    assert single["input_ids"].shape == (1, 7)
    with pytest.raises(ValueError, match="padding"):
        tok([a, b], return_tensors="np")  # ragged without padding
    with pytest.raises(ValueError, match="max_length"):
        tok([a, b], padding="max_length")

    import jax

    out = tok([a, b], padding=True, return_tensors="jax")
    assert isinstance(out["input_ids"], jax.Array) and out["input_ids"].shape == (2, 7)
    np.testing.assert_array_equal(np.asarray(out["timestamps"][1, :3]), ts_b)


def test_special_tokens():
    sensor = (700, 1, 1)
    tok = EventTokenizer(sensor)
    ev = stream(6, sensor, SHD_DTYPE, seed=5)
    out = tok(ev, add_special_tokens=True)
    ts = (ev["t"] - ev["t"][0]).tolist()
    assert out["input_ids"] == [tok.bos_token_id] + ev["x"].tolist() + [tok.eos_token_id]
    assert out["timestamps"] == [0] + ts + [ts[-1]]
    cut = tok(ev, add_special_tokens=True, max_length=4)
    assert cut["input_ids"] == [tok.bos_token_id] + ev["x"][:2].tolist() + [tok.eos_token_id]
    empty = tok(ev[:0], add_special_tokens=True)
    assert empty["input_ids"] == [tok.bos_token_id, tok.eos_token_id]


def test_large_timestamps_stay_int64_and_jax_refuses_overflow():
    sensor = (8, 8, 2)
    tok = EventTokenizer(sensor)
    ev = stream(4, sensor)
    ev["t"] = [5, 2**33, 2**33 + 1, 2**34]  # hours of recording in µs
    out = tok(ev, return_tensors="np")
    np.testing.assert_array_equal(out["timestamps"][0], ev["t"] - 5)
    import jax

    if not jax.config.jax_enable_x64:
        with pytest.raises(ValueError, match="int32"):
            tok(ev, return_tensors="jax")


def test_empty_streams_and_batches():
    tok = EventTokenizer((8, 8, 2))
    empty = np.zeros(0, DVS_DTYPE)
    out = tok([empty, stream(2, (8, 8, 2))], padding=True, return_tensors="np")
    assert out["input_ids"].shape == (2, 2)
    assert (out["attention_mask"][0] == 0).all() and (out["input_ids"][0] == tok.pad_token_id).all()
    assert tok([], padding=True, return_tensors="np")["input_ids"].shape == (0, 0)


def test_pad_already_tokenized_samples():
    sensor = (16, 16, 2)
    tok = EventTokenizer(sensor)
    enc = [tok(stream(n, sensor, seed=n)) for n in (3, 6)]
    padded = tok.pad([dict(e) | {"label": i} for i, e in enumerate(enc)], return_tensors="np", pad_to_multiple_of=4)
    assert padded["input_ids"].shape == (2, 8) and padded["label"] == [0, 1]
    np.testing.assert_array_equal(padded["input_ids"][0, :3], enc[0]["input_ids"])
    with pytest.raises(ValueError, match="vocabulary"):
        tok.pad([{"input_ids": [0, tok.vocab_size], "timestamps": [0, 1]}])


# ------------------------------------------------------------------ reference switches (issue 6)


def test_reference_dvs_layout():
    sensor = (128, 128, 2)
    tok = EventTokenizer(sensor, token_layout="reference-dvs")
    ev = stream(400, sensor, seed=6)
    ref = [x * y + 16384 * int(p) for x, y, p in zip(ev["x"].tolist(), ev["y"].tolist(), ev["p"].tolist())]
    assert tok(ev)["input_ids"] == ref
    assert tok.num_channels == 32768  # the reference's num_embeddings = prod(sensor)
    small = EventTokenizer(sensor, downsample=(4, 2), token_layout="reference-dvs")  # tonic.transforms.Downsample first
    want = [(x // 4) * (y // 2) + 32 * 64 * int(p) for x, y, p in zip(ev["x"].tolist(), ev["y"].tolist(), ev["p"].tolist())]
    assert small(ev)["input_ids"] == want and small.num_channels == 32 * 64 * 2
    with pytest.raises(ValueError, match="cannot be decoded"):
        tok.decode([1, 2])
    with pytest.raises(ValueError, match="one row"):
        EventTokenizer((700, 1, 1), token_layout="reference-dvs")


@pytest.mark.parametrize("sensor,layout", [((700, 1, 1), "unique"), ((128, 128, 2), "reference-dvs")])
def test_reference_collate_is_reproduced_with_the_models_gap_after_convention(sensor, layout):
    """The reference's collate gives tokens of events 0..L-2 and gaps np.diff(t). The tokenizer keeps all L
    events; a model with gap_convention='after' pairs token k with timestamps[k+1] - timestamps[k] and
    drops the last event. Written out here on padded batches: the same tokens and gaps."""
    tok = EventTokenizer(sensor, token_layout=layout)
    rows = [stream(n, sensor, DVS_DTYPE if sensor[1] > 1 else SHD_DTYPE, seed=n) for n in (9, 4, 1)]
    out = tok(rows, padding=True, pad_to_multiple_of=8, return_tensors="np")
    for i, ev in enumerate(rows):
        if sensor[1] == 1:  # the reference's collate, written out
            ref_tokens = ev["x"][:-1]
        else:
            ref_tokens = ev["x"][:-1].astype(int) * ev["y"][:-1] + 128 * 128 * ev["p"][:-1].astype(int)
        ref_gaps = np.diff(ev["t"])
        n = int(out["attention_mask"][i].sum())
        assert n == len(ev) and out["attention_mask"][i][:n].all()  # every event is kept, valid ones first
        np.testing.assert_array_equal(out["input_ids"][i][: n - 1], ref_tokens)
        np.testing.assert_array_equal(np.diff(out["timestamps"][i])[: n - 1], ref_gaps)


# ------------------------------------------------------------------ decoding


@pytest.mark.parametrize("downsample,merge", [((1, 1), False), ((4, 3), False), ((2, 2), True)])
def test_decode_inverts_encode_after_downsampling(downsample, merge):
    sensor = (50, 40, 2)
    tok = EventTokenizer(sensor, downsample=downsample, merge_polarities=merge)
    ev = stream(1000, sensor, seed=7)
    enc = tok(ev, return_tensors="np", add_special_tokens=True)
    dec = tok.decode(enc["input_ids"][0], enc["timestamps"][0])
    want = tok.channel_events(ev)
    # independent expectation: floor division of the raw coordinates
    np.testing.assert_array_equal(want["x"], ev["x"] // downsample[0])
    np.testing.assert_array_equal(want["y"], ev["y"] // downsample[1])
    np.testing.assert_array_equal(want["p"], 0 if merge else ev["p"])
    np.testing.assert_array_equal(want["t"], ev["t"] - ev["t"][0])
    assert dec.dtype == EVENT_DTYPE and (dec == want).all()
    xyp = tok.decode(enc["input_ids"][0])
    assert xyp.dtype.names == ("x", "y", "p") and (xyp["x"] == want["x"]).all()
    with pytest.raises(ValueError, match="special"):
        tok.decode(enc["input_ids"][0], skip_special_tokens=False)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tok.decode([tok.vocab_size])
    batch = tok([ev[:5], ev[:9]], padding=True, return_tensors="np")
    decoded = tok.batch_decode(batch["input_ids"], batch["timestamps"], batch["attention_mask"])
    assert [len(d) for d in decoded] == [5, 9] and (decoded[1] == want[:9]).all()


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    "field,value,match",
    [("t", [5, 3, 9], "'t' decreases at index 1"), ("t", [-1, 3, 9], "'t' has value -1"),
     ("x", [1, 16, 2], "'x' has value 16"), ("y", [1, 2, 99], "'y' has value 99"),
     ("p", [0, 2, 1], "'p' has value 2"), ("x", [1.0, np.nan, 2.0], "'x' holds a non-finite value nan"),
     ("x", ["a", "b", "c"], "'x' has dtype"), ("x", [0.5, 1, 2], "'x' must hold integers, got 0.5")],
)
def test_bad_events_raise_value_error_naming_field_and_value(field, value, match):
    tok = EventTokenizer((16, 16, 2))
    row = {"t": [1, 2, 3], "x": [1, 2, 3], "y": [0, 1, 2], "p": [0, 1, 0]}
    row[field] = value
    with pytest.raises(ValueError, match=match):
        tok(row)
    with pytest.raises(ValueError, match=match):
        tok([{"t": [0], "x": [0], "y": [0], "p": [0]}, row], padding=True)


def test_missing_fields_sorting_and_wrong_types():
    tok = EventTokenizer((16, 16, 2))
    with pytest.raises(ValueError, match="no 'x'"):
        tok({"t": [1, 2]})
    with pytest.raises(ValueError, match="no 't'"):
        tok({"x": [1, 2]})
    with pytest.raises(TypeError, match="structured numpy array"):
        tok(np.arange(5))  # positional arrays carry no field names
    with pytest.raises(TypeError, match="already tokenized"):
        tok({"input_ids": [1], "timestamps": [0]})
    out = tok({"t": [5, 3, 9], "x": [1, 2, 3], "y": [0, 0, 0], "p": [0, 0, 0]}, sort=True)
    assert out["input_ids"] == [2, 1, 3] and out["timestamps"] == [0, 2, 6]
    with pytest.raises(ValueError, match="sensor of size"):
        tok(EventStream(np.zeros(1, EVENT_DTYPE), (320, 240, 2)))
    for bad in [dict(sensor_size=(16, 16)), dict(sensor_size=(16, 0, 2)), dict(sensor_size=(8, 8, 2), downsample=0),
                dict(sensor_size=(8, 8, 2), token_layout="xy"), dict(sensor_size=(8, 8, 2), model_max_length=0),
                dict(sensor_size=(8, 8, 2), truncation_side="middle")]:
        with pytest.raises(ValueError):
            EventTokenizer(**bad)
    with pytest.raises(ValueError, match="padding must be"):
        tok({"t": [1], "x": [1]}, padding="sideways")
    with pytest.raises(ValueError, match="return_tensors"):
        tok({"t": [1], "x": [1]}, return_tensors="pt")


# ------------------------------------------------------------------ saving, loading, presets, Hub


def test_save_and_load_round_trip(tmp_path):
    tok = EventTokenizer((346, 260, 2), downsample=(2, 4), merge_polarities=True, truncation_side="left",
                         model_max_length=4096, name="davis346", sensor_layout={"x": "column"})
    (path,) = tok.save_pretrained(tmp_path / "out")
    saved = json.loads(Path(path).read_text())
    assert saved["vocab_size"] == tok.vocab_size == 173 * 65 + 3 and saved["tokenizer_class"] == "EventTokenizer"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["tokenizer_config.json"]  # no temp files left
    back = EventTokenizer.from_pretrained(tmp_path / "out")
    assert back.to_dict() == tok.to_dict()
    ev = stream(100, (346, 260, 2), seed=8)
    assert back(ev)["input_ids"] == tok(ev)["input_ids"]
    assert EventTokenizer.from_pretrained(path).vocab_size == tok.vocab_size  # the json file itself
    assert EventTokenizer.from_pretrained(tmp_path / "out", downsample=1).channel_size == (346, 260, 1)


def test_inconsistent_or_broken_configs(tmp_path):
    tok = EventTokenizer((16, 16, 2))
    tok.save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "tokenizer_config.json").read_text())
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(cfg | {"vocab_size": 7}))
    with pytest.raises(ValueError, match="vocab_size is 7"):
        EventTokenizer.from_pretrained(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(cfg | {"sensor_size": [16, -1, 2]}))
    with pytest.raises(ValueError, match="sensor_size"):
        EventTokenizer.from_pretrained(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not a valid tokenizer config"):
        EventTokenizer.from_pretrained(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(cfg | {"future_option": 1}))
    with pytest.warns(UserWarning, match="future_option"):
        EventTokenizer.from_pretrained(tmp_path)
    with pytest.raises(OSError, match="no tokenizer_config.json"):
        EventTokenizer.from_pretrained(tmp_path / "..")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        tok.save_pretrained(tmp_path / "file")


PRESETS = {
    "shd": (700, 1, 1), "ssc": (700, 1, 1), "dvs-gesture": (128, 128, 2), "cifar10-dvs": (128, 128, 2), "nmnist": (34, 34, 2),
    "dvxplorer": (320, 240, 2), "prophesee-gen3": (640, 480, 2), "prophesee-gen4": (1280, 720, 2),
    "nas-32-mono": (32, 1, 2), "nas-64-mono": (64, 1, 2), "nas-32-stereo": (32, 2, 2),
    "nas-64-stereo": (64, 2, 2), "st-mnist": (10, 10, 2), "spoken-digits": (64, 1, 1),
}


def test_presets_are_data_and_load_by_name():
    folder = data_dir("tokenizers")
    assert not (folder / "__init__.py").exists()  # it would shadow the `tokenizers` package
    assert EventTokenizer.presets() == sorted(PRESETS)
    for name, sensor in PRESETS.items():
        tok = EventTokenizer.from_pretrained(name)
        assert tok.sensor_size == sensor and tok.name == name
        assert tok.token_layout == "unique" and tok.downsample == (1, 1)
        assert tok.description and tok.sensor_layout
    assert EventTokenizer.from_pretrained("prophesee-gen4", downsample=4).channel_size == (320, 180, 2)


def test_hub_download_and_push_go_through_huggingface_hub(tmp_path, monkeypatch):
    import huggingface_hub

    src = EventTokenizer((20, 10, 2), name="hubtok")
    src.save_pretrained(tmp_path / "remote")
    calls = {}

    def fake_download(repo_id, filename, **kw):
        calls["download"] = (repo_id, filename, kw.get("revision"))
        return str(tmp_path / "remote" / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    tok = EventTokenizer.from_pretrained("someone/events-tokenizer", revision="v1")
    assert calls["download"] == ("someone/events-tokenizer", "tokenizer_config.json", "v1")
    assert tok.to_dict() == src.to_dict()

    def failing_download(repo_id, filename, **kw):
        raise huggingface_hub.errors.LocalEntryNotFoundError("offline")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", failing_download)
    with pytest.raises(OSError, match="not a preset"):
        EventTokenizer.from_pretrained("someone/missing")

    monkeypatch.setattr(huggingface_hub, "create_repo", lambda repo_id, **kw: calls.setdefault("create", repo_id))

    def fake_upload(repo_id, folder_path, **kw):
        calls["upload"] = (repo_id, sorted(p.name for p in Path(folder_path).iterdir()),
                           json.loads((Path(folder_path) / "tokenizer_config.json").read_text()))

    monkeypatch.setattr(huggingface_hub, "upload_folder", fake_upload)
    src.push_to_hub("me/tok")
    assert calls["create"] == "me/tok"
    assert calls["upload"][0] == "me/tok" and calls["upload"][1] == ["tokenizer_config.json"]
    assert calls["upload"][2] == src.to_dict()


def test_top_level_export():
    import eventlm

    assert eventlm.EventTokenizer is EventTokenizer


# ------------------------------------------------------------------ real recordings


def test_every_realdata_file_tokenizes_and_decodes_back(realdata):
    pytest.importorskip("eventlm.data.readers", reason="eventlm.data.readers (read_events) is not there yet")
    from eventlm.data.benchmark import REALDATA_FILES
    from eventlm.data.readers import read_events

    for rel, (options, preset, count) in REALDATA_FILES.items():
        s = read_events(realdata / rel, **options)
        assert len(s) == count, rel
        base = EventTokenizer.from_pretrained(preset)
        assert tuple(s.sensor_size) == base.sensor_size, (rel, s.sensor_size)  # readers and presets agree
        for tok in (base, EventTokenizer.from_pretrained(preset, downsample=(2, 2), merge_polarities=True)):
            enc = tok(s, return_tensors="np")
            ids, ts = enc["input_ids"][0], enc["timestamps"][0]
            assert len(ids) == count and ids.min() >= 0 and ids.max() < tok.num_channels, rel
            assert (np.diff(ts) >= 0).all() and ts[0] == 0, rel
            assert (tok.decode(ids, ts) == tok.channel_events(s)).all(), rel
            # the independent formula on the raw events
            ev = s.events
            fx, fy = tok.downsample
            W2, H2, P2 = tok.channel_size
            p = ev["p"].astype(np.int64) if P2 > 1 else 0
            np.testing.assert_array_equal(ids, p * W2 * H2 + (ev["y"] // fy).astype(np.int64) * W2 + ev["x"] // fx)


def test_event_columns_agree_with_as_events_for_every_dtype():
    """The tokenizer's validation path (event_columns, no structured copy) gives what as_events gives, for
    bool / int8 / int16 / uint8 / int64 / float fields, and never writes into the caller's arrays."""
    from eventlm.data.events import as_events, event_columns

    rng = np.random.default_rng(11)
    n = 257
    t = np.sort(rng.integers(0, 10**6, n))
    x, y, p = rng.integers(0, 40, n), rng.integers(0, 30, n), rng.integers(0, 2, n)
    want = np.empty(n, EVENT_DTYPE)
    want["t"], want["x"], want["y"], want["p"] = t, x, y, p
    for tx, ty, tp, tt in [("<i2", "<i2", "?", "<i8"), ("<i1", "<u1", "<i8", "<f8"), ("<i8", "<i8", "<i2", "<u4"),
                           ("<u2", "<i4", "<u1", "<i8")]:
        arr = np.empty(n, [("x", tx), ("y", ty), ("p", tp), ("t", tt)])
        arr["x"], arr["y"], arr["p"], arr["t"] = x, y, p, t
        before = arr.copy()
        cols = event_columns(arr, (40, 30, 2))
        ev = as_events(arr, (40, 30, 2))
        assert ev.dtype == EVENT_DTYPE and (ev == want).all(), (tx, ty, tp, tt)
        for name, col in zip("txyp", cols):
            np.testing.assert_array_equal(col, want[name])
        assert (arr == before).all()
    audio = as_events({"t": t, "x": x}, (40, 1, 1))
    assert (audio["y"] == 0).all() and (audio["p"] == 0).all() and audio.dtype == EVENT_DTYPE


def test_loads_by_repo_id_through_a_loopback_hub_mirror(tmp_path):
    """A saved tokenizer served by olah as a model repo comes back by repo id through huggingface_hub."""
    pytest.importorskip("olah")
    from hub_mirror import HubMirror

    tok = EventTokenizer((346, 260, 2), downsample=2, name="davis346")
    tok.save_pretrained(tmp_path / "repo")
    client = (
        "import json\n"
        "from eventlm import EventTokenizer\n"
        "tok = EventTokenizer.from_pretrained('eventlm-tests/davis-tokenizer')\n"
        "json.dump(tok.to_dict(), open('tok.json', 'w'))\n"
    )
    with HubMirror(tmp_path) as hub:
        hub.add_repo("eventlm-tests/davis-tokenizer", tmp_path / "repo", repo_type="models")
        hub.run_client(client)
    assert json.loads((tmp_path / "tok.json").read_text()) == tok.to_dict()
