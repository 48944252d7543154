"""eventlm convert-audio: audio datasets and folders → Hub event datasets (round trip, resuming, bad input)."""

import io
import json

import numpy as np
import pytest

from eventlm.data import audio_conversion as C
from eventlm.data.audio import audio_to_events

SR = 22050
SMALL = dict(num_channels=12, sample_rate=SR, workers=1, progress=False, bucket_seconds=0.05)


def _tone(seconds, rate, freq, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * freq * t) * (1 + 0.5 * np.sin(7 * t)) + 0.01 * rng.normal(size=t.size)).astype(np.float32)


def _wav_bytes(wave, rate, fmt="WAV"):
    import soundfile

    buf = io.BytesIO()
    soundfile.write(buf, wave, rate, format=fmt)
    return buf.getvalue()


def _audio_dataset():
    """A datasets dataset with an Audio column: tones at two rates, one stereo, one silent, one corrupt file."""
    from datasets import Audio, ClassLabel, Dataset, DatasetDict

    def rows(seed):
        clips = [(_wav_bytes(_tone(0.06, 16000, 300 + 200 * seed), 16000), 0),
                 (_wav_bytes(_tone(0.07, 44100, 1500), 44100, "FLAC"), 1),
                 (_wav_bytes(np.stack([_tone(0.05, SR, 800), _tone(0.05, SR, 900)], 1), SR), 1),
                 (_wav_bytes(np.zeros(1000, np.float32), SR), 0)]
        audio = [{"bytes": b, "path": f"clip{seed}-{i}.wav"} for i, (b, _) in enumerate(clips)]
        return {"audio": audio, "label": [label for _, label in clips], "speaker_id": [f"s{seed}"] * len(clips)}

    def build(columns):  # from_dict with an Audio feature would encode through torchcodec: cast instead
        ds = Dataset.from_dict(columns).cast_column("audio", Audio())
        return ds.cast_column("label", ClassLabel(names=["low", "high"]))

    train = rows(0)
    train["audio"].append({"bytes": b"RIFF not really audio", "path": "broken.wav"})
    train["label"].append(0)
    train["speaker_id"].append("s0")
    ds = DatasetDict({"train": build(train), "test": build(rows(1))})
    ds["train"].info.license = "cc-by-4.0"
    return ds


def _load(folder):
    from datasets import load_dataset

    return load_dataset(str(folder)).with_format("numpy")


def test_convert_audio_dataset_round_trip(tmp_path, caplog):
    ds = _audio_dataset()
    with caplog.at_level("WARNING", logger=C.__name__):
        out = C.audio_to_hub_dataset(ds, tmp_path / "events", chunk_size=2, **SMALL)
    said = caplog.text  # every kind of bad clip is said once, with its count
    assert "2 silent clip(s) gave no events; kept as empty streams" in said and "2 stereo clip(s) mixed down" in said
    assert "skipping train[4] (broken.wav): cannot decode audio" in said and "1 undecodable clip(s) skipped" in said
    loaded = _load(out)
    assert loaded["train"].num_rows == 4 and loaded["test"].num_rows == 4  # the corrupt clip is skipped
    assert loaded["train"].features["label"].names == ["low", "high"]
    row = loaded["train"][0]
    # the events are audio_to_events of the decoded, resampled clip with the clip's seed (recomputed here)
    clip = C._Clip("x", None, ("bytes", _wav_bytes(_tone(0.06, 16000, 300), 16000)), 0, {})
    wave, stereo = C.load_audio(clip, SR)
    expected = audio_to_events(wave, SR, 12, C.clip_seed(0, "train", 0), pad_to=int(0.05 * SR))
    assert len(expected) > 5 and not stereo
    np.testing.assert_array_equal(row["t"], expected["t"])
    np.testing.assert_array_equal(row["x"], expected["x"])
    assert (row["y"] == 0).all() and row["x"].max() < 12
    assert len(loaded["train"][3]["t"]) == 0  # silent: an empty stream, kept
    assert list(loaded["train"]["speaker"]) == ["s0"] * 4
    card = (out / "README.md").read_text()
    assert "cc-by-4.0" in card and "2 stereo mixed down" in card and "1 undecodable skipped" in card
    assert "train[4] (broken.wav): cannot decode audio: Error opening the stored bytes" in card and "Meddis" in card
    from eventlm.data import load_dataset_metadata

    meta = load_dataset_metadata(str(out))
    assert meta["sensor_size"] == (12, 1, 1) and meta["sensor_type"] == "audio"
    assert meta["conversion"]["corrupt_skipped"] == 1 and meta["conversion"]["silent"] == 2
    assert meta["cochlea"]["sample_rate"] == SR and meta["cochlea"]["parameters"]["bc_fibres"] == 40
    assert not (tmp_path / ".events.audio-work").exists()


def test_a_killed_conversion_resumes_without_converting_twice(tmp_path, monkeypatch):
    ds = _audio_dataset()
    reference = C.audio_to_hub_dataset(ds, tmp_path / "ref", chunk_size=1, **SMALL)
    real, calls = C._convert_chunk, []

    def dies_after_three(job):
        if len(calls) == 3:
            raise KeyboardInterrupt("killed")
        calls.append((job[1], job[2]))
        return real(job)

    monkeypatch.setattr(C, "_convert_chunk", dies_after_three)
    with pytest.raises(KeyboardInterrupt):
        C.audio_to_hub_dataset(ds, tmp_path / "out", chunk_size=1, **SMALL)
    assert not (tmp_path / "out").exists()
    assert len(list((tmp_path / ".out.audio-work" / "chunks").glob("*.npz"))) == 3
    first, calls[:] = list(calls), []
    monkeypatch.setattr(C, "_convert_chunk", lambda job: (calls.append((job[1], job[2])), real(job))[1])
    out = C.audio_to_hub_dataset(ds, tmp_path / "out", chunk_size=1, **SMALL)
    assert len(calls) == 9 - 3 and not set(calls) & set(first)  # 9 clips, each converted once
    a, b = _load(reference), _load(out)
    for split in ("train", "test"):
        for col in ("t", "x", "label", "source"):
            assert [np.asarray(v).tolist() for v in a[split][col]] == [np.asarray(v).tolist() for v in b[split][col]]
    # the same work folder with other settings is refused, naming them
    C.audio_to_hub_dataset(ds, tmp_path / "again", chunk_size=1, **{**SMALL, "workers": 1})
    monkeypatch.setattr(C, "_convert_chunk", lambda job: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        C.audio_to_hub_dataset(ds, tmp_path / "other", chunk_size=1, **SMALL)
    with pytest.raises(ValueError, match="unfinished conversion with other settings.*delete the folder"):
        C.audio_to_hub_dataset(ds, tmp_path / "other", chunk_size=1, **{**SMALL, "seed": 3})


def test_convert_audio_folder_with_the_command(tmp_path, capsys):
    import soundfile

    from eventlm.cli import main

    for split in ("train", "test"):
        for k, (cls, freq) in enumerate((("hum", 200), ("whistle", 2500))):
            (tmp_path / "src" / split / cls).mkdir(parents=True)
            soundfile.write(tmp_path / "src" / split / cls / f"a{k}.wav", _tone(0.05, 48000, freq), 48000)
            soundfile.write(tmp_path / "src" / split / cls / f"b{k}.flac", _tone(0.04, 48000, freq * 1.1), 48000)
    argv = ["convert-audio", str(tmp_path / "src"), str(tmp_path / "out"), "--num-channels", "8",
            "--workers", "2", "--chunk-size", "2", "--license", "cc0-1.0"]
    assert main(argv) == 0
    loaded = _load(tmp_path / "out")
    assert loaded["train"].features["label"].names == ["hum", "whistle"]
    assert sorted(loaded["test"]["source"]) == ["hum/a0.wav", "hum/b0.flac", "whistle/a1.wav", "whistle/b1.flac"]
    assert all(len(t) > 0 for t in loaded["train"]["t"])
    assert "cc0-1.0" in (tmp_path / "out" / "README.md").read_text()


def test_convert_audio_bad_input(tmp_path):
    from datasets import Audio, Dataset

    ds = Dataset.from_dict({"audio": [{"bytes": _wav_bytes(_tone(0.05, SR, 500), SR), "path": "a.wav"}],
                            "target": [0]}).cast_column("audio", Audio())
    with pytest.raises(ValueError, match=r"no label column 'label' \(columns: \['audio', 'target'\]\); pass --label-column"):
        C.audio_to_hub_dataset(ds, tmp_path / "x", **SMALL)
    with pytest.raises(ValueError, match="16000 Hz is too low.*48000"):
        C.audio_to_hub_dataset(ds, tmp_path / "x", label_column="target", **{**SMALL, "sample_rate": 16000})
    with pytest.raises(ValueError, match="'.*nothing' is neither an audio folder nor a dataset"):
        C.audio_to_hub_dataset(str(tmp_path / "nothing"), tmp_path / "y", **SMALL)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(ValueError, match="not empty; pass overwrite=True"):
        C.audio_to_hub_dataset(ds, tmp_path / "full", label_column="target", **SMALL)
