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


@pytest.fixture(scope="module")
def chain(tmp_path_factory, event_dataset):
    """Next-event pretraining, then fine-tuning from it with --push_to_hub (huggingface_hub's create_repo and
    upload_folder replaced by recorders: what would be uploaded is kept)."""
    import huggingface_hub

    tmp = tmp_path_factory.mktemp("chain")
    pretrained, finetuned = tmp / "pt", tmp / "cls"
    pt_results = _script("run_next_event_pretraining").main(
        TINY + ["--dataset_name", event_dataset, "--output_dir", str(pretrained)])
    pushed = {}

    def fake_create_repo(repo_id, **kw):
        pushed["create"] = (repo_id, kw)
        return huggingface_hub.RepoUrl(f"https://huggingface.co/{repo_id}")

    def fake_upload_folder(**kw):
        folder = Path(kw["folder_path"])
        pushed.update(files=sorted(kw["allow_patterns"]), card=(folder / "README.md").read_text(),
                      repo_id=kw["repo_id"], folder=folder)
        return "commit"

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(huggingface_hub, "create_repo", fake_create_repo)
        mp.setattr(huggingface_hub, "upload_folder", fake_upload_folder)
        cls_results = _script("run_classification").main(
            TINY + ["--dataset_name", event_dataset, "--model_name_or_path", str(pretrained), "--output_dir",
                    str(finetuned), "--push_to_hub", "true", "--hub_model_id", "someone/tiny-eventssm"])
    return dict(tmp=tmp, pretrained=pretrained, finetuned=finetuned, pt=pt_results, cls=cls_results, pushed=pushed)


def test_pretraining_reports_nll_parts_and_baseline(chain):
    res, pretrained = chain["pt"], chain["pretrained"]
    for key in ("eval_loss", "eval_token_nll", "eval_time_nll", "baseline_nll", "baseline_token_nll"):
        assert np.isfinite(res[key]), key
    assert res["eval_loss"] == pytest.approx(res["eval_token_nll"] + res["eval_time_nll"], rel=1e-5)
    saved = json.loads((pretrained / "eval_results.json").read_text())
    assert saved["baseline_nll"] == pytest.approx(res["baseline_nll"])
    assert (pretrained / "model.safetensors").is_file() and (pretrained / "tokenizer_config.json").is_file()


def test_fine_tuning_writes_the_hf_examples_outputs(chain):
    res, finetuned = chain["cls"], chain["finetuned"]
    assert 0.0 <= res["eval_accuracy"] <= 1.0 and res["eval_split"] == "test" and res["eval_samples"] == 12
    for name in ("train_results.json", "eval_results.json", "all_results.json", "config.json", "model.safetensors",
                 "tokenizer_config.json", "README.md", "training_curves.png", "confusion_matrix.png", "metrics.jsonl"):
        assert (finetuned / name).is_file(), name
    assert json.loads((finetuned / "eval_results.json").read_text())["eval_accuracy"] == res["eval_accuracy"]
    confusion = json.loads((finetuned / "confusion_matrix.json").read_text())
    assert np.sum(confusion["matrix"]) == 12 and confusion["labels"] == CLASSES


def test_push_to_hub_uploads_model_tokenizer_card_and_results(chain, event_dataset):
    import huggingface_hub

    pushed, res = chain["pushed"], chain["cls"]
    assert pushed["create"][0] == pushed["repo_id"] == "someone/tiny-eventssm"
    assert {"config.json", "model.safetensors", "tokenizer_config.json", "README.md", "eval_results.json",
            "all_results.json", "training_curves.png", "confusion_matrix.png"} <= set(pushed["files"])
    assert not [f for f in pushed["files"] if f.startswith(("checkpoints", "runs"))]
    card = huggingface_hub.ModelCard(pushed["card"])
    meta = card.data.to_dict()
    assert meta["library_name"] == "eventlm" and "eventssm" in meta["tags"]
    # a local base model and a local dataset folder are named in the text, not as (false) Hub ids
    assert "base_model" not in meta and "datasets" not in meta
    assert "fine-tuned from the local model folder `pt`" in card.text and "local dataset folder `tiny-events`" in card.text
    assert "the test split was evaluated once" in card.text and "confusion matrix on the test split" in card.text
    metrics = {m["type"]: m["value"] for m in meta["model-index"][0]["results"][0]["metrics"]}
    assert metrics["accuracy"] == pytest.approx(res["eval_accuracy"], abs=1e-6)
    assert metrics["loss"] == pytest.approx(res["eval_loss"], abs=1e-6)
    assert "someone/tiny-eventssm" in card.text
    assert "(training_curves.png)" in card.text and "(confusion_matrix.png)" in card.text


def test_evaluation_script_reproduces_the_fine_tuning_numbers(chain, event_dataset):
    res = chain["cls"]
    res_eval = _script("run_evaluation").main(
        TINY + ["--model_name_or_path", str(chain["finetuned"]), "--dataset_name", event_dataset,
                "--output_dir", str(chain["tmp"] / "ev")])
    assert res_eval["eval_accuracy"] == pytest.approx(res["eval_accuracy"])
    assert res_eval["eval_loss"] == pytest.approx(res["eval_loss"], rel=1e-5)
    assert json.loads((chain["tmp"] / "ev" / "eval_results.json").read_text())["eval_samples"] == 12


def test_pushed_model_loads_by_repo_id_through_a_loopback_hub(chain, event_dataset, tmp_path):
    """The folder that would be pushed, served by olah as a model repo: model and tokenizer load by repo id
    and give the local model's logits."""
    import shutil

    pytest.importorskip("olah")
    if shutil.which("git") is None:
        pytest.skip("the Hub mirror serves git repositories: git is not installed")
    sys.path.insert(0, str(Path(__file__).parent))
    from hub_mirror import HubMirror

    upload = tmp_path / "upload"
    for name in chain["pushed"]["files"]:
        (upload / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(chain["pushed"]["folder"] / name, upload / name)
    client = (
        "import json, numpy as np, datasets\n"
        "from eventlm import AutoModelForSequenceClassification, EventTokenizer\n"
        "from eventlm.data import EventCollator\n"
        "tok = EventTokenizer.from_pretrained('someone/tiny-eventssm')\n"
        "model = AutoModelForSequenceClassification.from_pretrained('someone/tiny-eventssm')\n"
        f"rows = list(datasets.load_dataset({event_dataset!r})['test'].with_format('numpy'))[:4]\n"
        "b = EventCollator(tok, pad_to_multiple_of=32)(rows)\n"
        "logits = model(b['input_ids'], b['timestamps'], b['attention_mask']).logits\n"
        "json.dump(np.asarray(logits).tolist(), open('logits.json', 'w'))\n"
    )
    with HubMirror(tmp_path) as hub:
        hub.add_repo("someone/tiny-eventssm", upload, repo_type="models")
        hub.run_client(client)
    import datasets

    from eventlm import AutoModelForSequenceClassification, EventTokenizer
    from eventlm.data import EventCollator

    tok = EventTokenizer.from_pretrained(str(chain["finetuned"]))
    model = AutoModelForSequenceClassification.from_pretrained(str(chain["finetuned"]))
    rows = list(datasets.load_dataset(event_dataset)["test"].with_format("numpy"))[:4]
    b = EventCollator(tok, pad_to_multiple_of=32)(rows)
    local = np.asarray(model(b["input_ids"], b["timestamps"], b["attention_mask"]).logits)
    np.testing.assert_array_equal(np.asarray(json.loads((tmp_path / "logits.json").read_text()), np.float32), local)


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
    assert resolve_presets(m, d, t) == "spoken-digits" and d.embedded_dataset == "spoken-digits"
    assert t.do_train and t.do_eval and t.num_train_epochs >= 1
    m, d, t = parse_args((ModelArguments, DataArguments, TrainingArguments), ["--preset", "tiny"])
    assert resolve_presets(m, d, t) == "tiny" and d.embedded_dataset == "synthetic"  # what the small tests train on
    m, d, t = parse_args((ModelArguments, DataArguments, TrainingArguments), ["--embedded_dataset", "spoken-digit"])
    with pytest.raises(ValueError, match="unknown --embedded_dataset 'spoken-digit' \\(did you mean 'spoken-digits'"):
        resolve_presets(m, d, t)


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


def test_recordings_cut_into_windows_with_a_held_out_end(realdata):
    from eventlm.training.arguments import DataArguments

    path = realdata / "aerzip_nas" / "sound_mono_32ch_ONOFF_addr2b_ts02.aedat"
    args = DataArguments(recordings=[str(path)], recording_format="nas", window_events=4096, holdout_fraction=0.25,
                         recording_options=json.dumps({"channels": 32, "address_bytes": 2, "tick_us": 0.2}))
    splits = pipelines.recordings_to_datasets(args)
    assert splits["sensor_size"] == (32, 1, 2)
    n_train = int(round(49_864 * 0.75))
    assert len(splits["train"]) == n_train // 4096 and len(splits["validation"]) == (49_864 - n_train) // 4096
    for split in ("train", "validation"):
        for row in splits[split]:
            assert len(row["t"]) == 4096 and row["t"][0] == 0 and np.all(np.diff(row["t"]) >= 0)
            assert row["x"].max() < 32 and row["p"].max() <= 1


def test_unigram_gap_baseline_by_hand():
    from eventlm.data.collator import EventCollator
    from eventlm.tokenization_events import EventTokenizer

    tok = EventTokenizer(sensor_size=(4, 1, 1))
    collator = EventCollator(tok, task="next-event")
    train = [{"t": [0, 2, 2, 7], "x": [0, 1, 1, 3]}, {"t": [0, 1], "x": [2, 2]}]
    val = [{"t": [0, 3, 4], "x": [1, 0, 3]}]
    got = pipelines.unigram_gap_baseline(train, val, tok, collator)

    def targets(rows):  # the events the model predicts: everything after the first position, with its gap
        batch = collator(rows)
        ids, gaps = [], []
        for i, n in enumerate(batch["attention_mask"].sum(1)):
            ids += list(batch["input_ids"][i, 1:n])
            gaps += list(np.diff(batch["timestamps"][i, :n]))
        return ids, gaps

    train_ids, train_gaps = targets(train)
    val_ids, val_gaps = targets(val)
    counts = {v: 1 + train_ids.count(v) for v in range(tok.vocab_size)}  # add-one
    total = sum(counts.values())
    token = -np.mean([np.log(counts[v] / total) for v in val_ids])
    m = float(np.mean(train_gaps))
    time_nll = -np.mean([np.log((1 / (1 + m)) * (m / (1 + m)) ** k) for k in val_gaps])  # geometric, mean m
    assert got["baseline_token_nll"] == pytest.approx(token, rel=1e-12)
    assert got["baseline_time_nll"] == pytest.approx(time_nll, rel=1e-12)
    assert got["baseline_nll"] == pytest.approx(token + time_nll, rel=1e-12)


def test_benchmark_training_runs_small(capsys):
    from eventlm.training.benchmark import benchmark_training_step

    result = benchmark_training_step("synthetic", batch_size=2, seq_len=32, steps=1)
    assert result["global_batch"] == 2 and result["seq_len"] == 32 and result["parameters"] > 0
    assert result["steps_per_s"] > 0 and result["events_per_s"] == pytest.approx(64 * result["steps_per_s"], rel=1e-2)
    assert result["peak_memory_gb"] > 0 and np.isfinite(result["loss"])
    # the script: each preset in its own process, one table
    results = _script("benchmark_training").main(["--presets", "synthetic", "--batch_size", "2", "--seq_len", "32",
                                                  "--steps", "1"])
    assert len(results) == 1 and results[0]["global_batch"] == 2 and "error" not in results[0]
    assert "synthetic" in capsys.readouterr().out
