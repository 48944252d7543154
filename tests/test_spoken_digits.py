"""The embedded spoken-digit dataset: a tiny build is deterministic, holds voices out, and labels what was said."""

import numpy as np
import pytest

pytest.importorskip("espeakng_loader", reason="the spoken-digit dataset needs the espeakng-loader wheel")
datasets = pytest.importorskip("datasets")

from eventlm.data import spoken_digits as S  # noqa: E402
from eventlm.data.synthetic import load_cached_build  # noqa: E402

TINY = dict(num_channels=8, max_voices=4, validation_voices=1, test_voices=1)  # 2 train voices: 80 clips


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("spoken")
    folders = [S.make_spoken_digits_dataset(root / name, seed=3, workers=1, progress=False, **TINY)
               for name in ("a", "b")]
    return [load_cached_build(f, None, root / "hf") for f in folders]


def test_same_seed_gives_identical_events(built):
    a, b = built
    for split in S.SPLITS:
        for column in ("t", "x", "y", "p", "label", "speaker"):
            left, right = a[split][column], b[split][column]
            assert len(left) == len(right) and all(np.array_equal(u, v) for u, v in zip(left, right)), (split, column)
    assert sum(len(t) for t in a["train"]["t"]) > 0
    assert max(int(x.max()) for x in a["train"]["x"] if len(x)) < TINY["num_channels"]


def test_held_out_voices_are_disjoint_and_every_class_is_in_every_split(built):
    ds = built[0]
    voices = {split: set(ds[split]["speaker"]) for split in S.SPLITS}
    assert [len(voices[s]) for s in S.SPLITS] == [2, 1, 1]
    assert not voices["train"] & voices["test"] and not voices["train"] & voices["validation"]
    assert not voices["validation"] & voices["test"]
    assert voices == {s: set(v) for s, v in S.voice_splits(3, 1, 1, max_voices=4).items()}
    for split in S.SPLITS:
        assert sorted(ds[split]["label"]) == sorted(list(range(20)) * len(voices[split]))
    assert ds["train"].features["label"].names == list(S.CLASS_NAMES)
    assert S.voice_splits(4, 1, 1, max_voices=4) != S.voice_splits(3, 1, 1, max_voices=4)  # the seed deals the voices


def test_labels_name_the_spoken_word(built):
    """Each row's label is the class of the word eSpeak NG spoke (its source name: <voice>-<word>-<index>.wav)."""
    ds = built[0]
    for split in S.SPLITS:
        for label, source in zip(ds[split]["label"], ds[split]["source"]):
            lang, word = S.CLASS_NAMES[int(label)].split("-")
            assert f"-{word}-" in str(source), (label, source)
    plan = S.clip_plan(3, **TINY)
    for rows in plan.values():
        for clip in rows:
            lang, word = S.CLASS_NAMES[clip["label"]].split("-")
            assert clip["text"] == word and clip["voice"] == f"{lang}+{clip['speaker']}"
    assert S.CLASS_NAMES[:3] == ("en-zero", "en-one", "en-two") and S.CLASS_NAMES[10] == "de-null"


def test_events_fit_the_sensor_and_the_tokenizer_preset():
    from eventlm import EventTokenizer

    tok = EventTokenizer.from_pretrained(S.TOKENIZER_PRESET)
    assert tuple(tok.sensor_size) == (S.DEFAULTS["num_channels"], 1, 1)


def test_bad_options_are_refused():
    with pytest.raises(TypeError, match="unknown spoken-digit dataset option"):
        S.clip_plan(0, num_voices=3)
    with pytest.raises(ValueError, match="leave voices for training"):
        S.voice_splits(0, validation_voices=2, test_voices=2, max_voices=4)


def test_main_job_on_spoken_digits_reports_the_baselines(built, tmp_path, monkeypatch):
    """The main job's path (no --dataset_name, the spoken-digit dataset): results, eval_results.json and the card
    show the model beside one *_baseline_accuracy per baseline (the tiny build stands in for the default one)."""
    import json

    from eventlm.training import baselines
    from eventlm.training.arguments import DataArguments, ModelArguments, TrainingArguments, parse_args
    from eventlm.training.pipelines import run_classification

    monkeypatch.setattr(S, "load_spoken_digits_dataset", lambda cache_dir=None: built[0])
    out = tmp_path / "main"
    argv = ["--preset", "tiny", "--embedded_dataset", "spoken-digits", "--config_overrides",
            "hidden_size=8,state_size=8,num_ssm_blocks=2,num_layers_per_stage=1,pooling_stride=2",
            "--max_steps", "2", "--per_device_train_batch_size", "8", "--pad_to_multiple_of", "32",
            "--disable_tqdm", "true", "--report_to", "none", "--output_dir", str(out)]
    results = run_classification(*parse_args((ModelArguments, DataArguments, TrainingArguments), argv))
    keys = [baselines.baseline_key(name) for name in baselines.BASELINES]
    saved = json.loads((out / "eval_results.json").read_text())
    for key in keys:
        assert 0.0 <= results[key] <= 1.0 and saved[key] == results[key]
    card = (out / "README.md").read_text()
    assert "eventlm-spoken-digits" in card and "Simple baselines on the same split" in card
    assert "chance (1 / 20 classes): 0.0500" in card


def test_the_run_summary_names_the_embedded_dataset_it_built(tmp_path):
    """The summary's "data:" line names the embedded dataset the run trained on and where it is cached."""
    from eventlm.training.arguments import DataArguments, ModelArguments
    from eventlm.training.pipelines import data_location

    for name in ("spoken-digits", "synthetic"):
        line = data_location(DataArguments(embedded_dataset=name, synthetic_cache_dir=str(tmp_path)), ModelArguments())
        assert f"the embedded {name} dataset" in line, line
        assert str(tmp_path) in line and name in line.split("built in")[1], line
