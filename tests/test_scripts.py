"""Every script and the `eventlm` command on fake data: pretrain -> fine-tune -> evaluate, the Hub push at the
huggingface_hub client boundary, convert-dataset, and bad input rejected before any training step."""

import importlib.util
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("JAX_PLATFORMS", "cpu")

from eventlm import cli  # noqa: E402
from eventlm.training import pipelines  # noqa: E402
from eventlm.training.arguments import TrainingArguments  # noqa: E402
from eventlm.training.trainer import Trainer  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SENSOR = (16, 1, 1)
CLASSES = ["low", "mid", "high"]
TINY = ["--preset", "tiny", "--config_overrides",
        "hidden_size=8,state_size=8,num_ssm_blocks=2,num_layers_per_stage=1,pooling_stride=2,num_mixture_components=2",
        "--per_device_train_batch_size", "8", "--per_device_eval_batch_size", "8", "--max_steps", "3",
        "--pad_to_multiple_of", "32", "--disable_tqdm", "true", "--report_to", "none", "--logging_steps", "1"]


def _script(name):
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _sample(rng, label):
    n = int(rng.integers(12, 30))
    ev = np.zeros(n, dtype=[("t", "<i8"), ("x", "<i8"), ("p", "<i8")])  # tonic's SHD dtype
    ev["t"] = np.sort(rng.integers(0, 30_000, n))
    ev["x"] = (rng.integers(0, 5, n) + 5 * label) % SENSOR[0]
    ev["p"] = 1
    return ev


class _FakeSplit:
    """A tonic-like dataset: ds[i] -> (events, label)."""

    sensor_size = SENSOR
    classes = CLASSES

    def __init__(self, n, seed):
        rng = np.random.default_rng(seed)
        self.targets = rng.integers(0, len(CLASSES), n)
        self.items = [(_sample(rng, int(y)), int(y)) for y in self.targets]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


@pytest.fixture(scope="module")
def event_dataset(tmp_path_factory):
    """A Hub-layout dataset folder (train + test, no validation split) written by eventlm.data.hub."""
    from eventlm.data.hub import tonic_to_hub_dataset

    folder = tmp_path_factory.mktemp("data") / "tiny-events"
    return str(tonic_to_hub_dataset({"train": _FakeSplit(56, 0), "test": _FakeSplit(12, 1)}, folder,
                                    sensor_size=SENSOR, class_names=CLASSES))


@pytest.fixture
def no_training(monkeypatch):
    """Fail the test if any training step would run."""
    def refuse(self, *args, **kwargs):
        raise AssertionError("training started although the input was bad")

    monkeypatch.setattr(Trainer, "train", refuse)


def test_pretrain_finetune_evaluate_and_push(tmp_path, event_dataset, monkeypatch):
    import huggingface_hub

    pretrained = tmp_path / "pt"
    res = _script("run_next_event_pretraining").main(
        TINY + ["--dataset_name", event_dataset, "--output_dir", str(pretrained)])
    for key in ("eval_loss", "eval_token_nll", "eval_time_nll", "baseline_nll", "baseline_token_nll"):
        assert np.isfinite(res[key]), key
    assert res["eval_loss"] == pytest.approx(res["eval_token_nll"] + res["eval_time_nll"], rel=1e-5)
    saved = json.loads((pretrained / "eval_results.json").read_text())
    assert saved["baseline_nll"] == pytest.approx(res["baseline_nll"])
    assert (pretrained / "model.safetensors").is_file() and (pretrained / "tokenizer_config.json").is_file()

    pushed = {}
    monkeypatch.setattr(huggingface_hub, "create_repo",
                        lambda repo_id, **kw: pushed.setdefault("create", (repo_id, kw)) and
                        huggingface_hub.RepoUrl(f"https://huggingface.co/{repo_id}"))

    def fake_upload_folder(**kw):
        folder = Path(kw["folder_path"])
        pushed["files"] = sorted(kw["allow_patterns"])
        pushed["card"] = (folder / "README.md").read_text()
        pushed["repo_id"] = kw["repo_id"]
        return "commit"

    monkeypatch.setattr(huggingface_hub, "upload_folder", fake_upload_folder)
    finetuned = tmp_path / "cls"
    res = _script("run_classification").main(
        TINY + ["--dataset_name", event_dataset, "--model_name_or_path", str(pretrained), "--output_dir",
                str(finetuned), "--push_to_hub", "true", "--hub_model_id", "someone/tiny-eventssm"])
    assert 0.0 <= res["eval_accuracy"] <= 1.0 and res["eval_split"] == "test" and res["eval_samples"] == 12
    for name in ("train_results.json", "eval_results.json", "all_results.json", "config.json", "model.safetensors",
                 "tokenizer_config.json", "README.md", "training_curves.png", "confusion_matrix.png", "metrics.jsonl"):
        assert (finetuned / name).is_file(), name
    assert json.loads((finetuned / "eval_results.json").read_text())["eval_accuracy"] == res["eval_accuracy"]
    confusion = json.loads((finetuned / "confusion_matrix.json").read_text())
    assert np.sum(confusion["matrix"]) == 12 and confusion["labels"] == CLASSES

    # the Hub push: which repo, which files, which card
    assert pushed["create"][0] == pushed["repo_id"] == "someone/tiny-eventssm"
    assert {"config.json", "model.safetensors", "tokenizer_config.json", "README.md", "eval_results.json",
            "all_results.json", "training_curves.png", "confusion_matrix.png"} <= set(pushed["files"])
    assert not [f for f in pushed["files"] if f.startswith(("checkpoints", "runs"))]
    card = huggingface_hub.ModelCard(pushed["card"])
    meta = card.data.to_dict()
    assert meta["library_name"] == "eventlm" and "eventssm" in meta["tags"] and meta["base_model"] == str(pretrained)
    assert meta["datasets"] == [event_dataset]
    metrics = {m["type"]: m["value"] for m in meta["model-index"][0]["results"][0]["metrics"]}
    assert metrics["accuracy"] == pytest.approx(res["eval_accuracy"], abs=1e-6)
    assert metrics["loss"] == pytest.approx(res["eval_loss"], abs=1e-6)
    assert "someone/tiny-eventssm" in card.text
    assert "(training_curves.png)" in card.text and "(confusion_matrix.png)" in card.text

    # evaluation of the saved folder reproduces the fine-tuning run's test numbers
    res_eval = _script("run_evaluation").main(
        TINY + ["--model_name_or_path", str(finetuned), "--dataset_name", event_dataset,
                "--output_dir", str(tmp_path / "ev")])
    assert res_eval["eval_accuracy"] == pytest.approx(res["eval_accuracy"])
    assert res_eval["eval_loss"] == pytest.approx(res["eval_loss"], rel=1e-5)


def test_output_folder_with_another_run_is_refused(tmp_path, event_dataset, no_training):
    out = tmp_path / "run"
    argv = TINY + ["--dataset_name", event_dataset, "--output_dir", str(out)]
    pipelines.prepare_output_dir(TrainingArguments(output_dir=str(out)), {"seed": 1, "learning_rate": 0.1})
    with pytest.raises(ValueError, match="holds another run"):
        _script("run_classification").main(argv)
    other = tmp_path / "not-a-run"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty"):
        _script("run_classification").main(TINY + ["--dataset_name", event_dataset, "--output_dir", str(other)])
    assert (other / "notes.txt").read_text() == "mine"


def test_missing_columns_and_bad_labels_are_refused(tmp_path, monkeypatch, no_training):
    import datasets

    def fake_splits(columns):
        def load(data_args, model_args, seed):
            ds = datasets.Dataset.from_dict(columns)
            return {"train": ds, "validation": ds, "test": ds}
        return load

    rows = {"t": [[0, 5, 9]] * 4, "x": [[1, 2, 3]] * 4, "y": [[0, 0, 0]] * 4, "p": [[0, 0, 0]] * 4}
    monkeypatch.setattr(pipelines, "load_event_datasets", fake_splits({"t": rows["t"], "label": [0, 1, 0, 1]}))
    with pytest.raises(ValueError, match=r"lacks the column\(s\) \['x'\]"):
        _script("run_classification").main(TINY + ["--output_dir", str(tmp_path / "a")])
    monkeypatch.setattr(pipelines, "load_event_datasets", fake_splits(dict(rows)))
    with pytest.raises(ValueError, match="'label' column"):
        _script("run_classification").main(TINY + ["--output_dir", str(tmp_path / "b")])
    labels = datasets.ClassLabel(names=CLASSES)
    features = datasets.Features({"t": datasets.Sequence(datasets.Value("int64")),
                                  "x": datasets.Sequence(datasets.Value("int64")), "label": labels})

    def bad_labels(data_args, model_args, seed):
        good = datasets.Dataset.from_dict({"t": rows["t"], "x": rows["x"], "label": [0, 1, 2, 1]}, features=features)
        bad = datasets.Dataset.from_dict({"t": rows["t"], "x": rows["x"], "label": [0, 1, 7, 1]})
        return {"train": good, "validation": good, "test": bad}

    monkeypatch.setattr(pipelines, "load_event_datasets", bad_labels)
    with pytest.raises(ValueError, match=r"label 7 at row 2, outside 0\.\.2"):
        _script("run_classification").main(TINY + ["--output_dir", str(tmp_path / "c")])


def test_model_with_a_smaller_vocabulary_is_refused(tmp_path, event_dataset, no_training):
    from eventlm.models.eventssm.configuration_eventssm import EventSSMConfig
    from eventlm.models.eventssm.modeling_flax_eventssm import FlaxEventSSMForSequenceClassification

    config = EventSSMConfig.from_preset("tiny", vocab_size=10, pad_token_id=7, bos_token_id=8, eos_token_id=9,
                                        num_labels=3, hidden_size=8, state_size=8, num_ssm_blocks=2,
                                        num_layers_per_stage=1, pooling_stride=2)
    FlaxEventSSMForSequenceClassification(config).save_pretrained(tmp_path / "small")
    with pytest.raises(ValueError, match=r"vocabulary \(10 tokens\) is smaller than the tokenizer's \(19"):
        _script("run_classification").main(
            TINY + ["--dataset_name", event_dataset, "--model_name_or_path", str(tmp_path / "small"),
                    "--output_dir", str(tmp_path / "out")])


def test_default_arguments_are_the_main_job():
    from eventlm.training.arguments import DataArguments, ModelArguments, parse_args, resolve_presets

    m, d, t = parse_args((ModelArguments, DataArguments, TrainingArguments), [])
    assert d.dataset_name is None and m.model_name_or_path is None and t.output_dir is None
    assert resolve_presets(m, d, t) == "synthetic"
    assert t.do_train and t.do_eval and t.num_train_epochs >= 1


def test_cli_lists_and_dispatches_commands(capsys, tmp_path, monkeypatch):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in ("train", "pretrain", "evaluate", "convert-dataset", "stream", "convert-checkpoint"):
        assert name in out
    assert cli.main(["no-such-command"]) == 2
    cli.register_command("hello", "eventlm.no_such_module:main", "a command whose module is absent")
    try:
        assert cli.main(["hello"]) == 2
        assert "not available" in capsys.readouterr().err
    finally:
        cli.COMMANDS.pop("hello")
    seen = {}
    monkeypatch.setattr(pipelines, "run_classification", lambda m, d, t: seen.update(m=m, d=d, t=t) or {})
    assert cli.main(["train", "--preset", "shd", "--output_dir", str(tmp_path / "x")]) == 0
    assert seen["m"].preset == "shd" and seen["t"].output_dir == str(tmp_path / "x")
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["evaluate", "--help"])
    assert exit_info.value.code == 0


def test_cli_convert_dataset_from_an_event_folder(tmp_path):
    import datasets

    rng = np.random.default_rng(0)
    for label in CLASSES:
        (tmp_path / "rec" / label).mkdir(parents=True)
        for k in range(2):
            ev = _sample(rng, CLASSES.index(label))
            table = np.zeros(len(ev), dtype=[("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("p", "<i1")])
            table["t"], table["x"] = ev["t"], ev["x"]
            np.save(tmp_path / "rec" / label / f"r{k}.npy", table)
    out = tmp_path / "hub"
    assert cli.main(["convert-dataset", str(tmp_path / "rec"), str(out), "--sensor-size", "16", "1", "1",
                     "--license", "cc-by-4.0"]) == 0
    ds = datasets.load_dataset(str(out))["train"]
    assert len(ds) == 6 and sorted(ds.features["label"].names) == sorted(CLASSES)
    assert "license: cc-by-4.0" in (out / "README.md").read_text()
