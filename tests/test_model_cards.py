"""Model cards true to their run (issue 15): the data the run used (Hub dataset, local folder, raw
recordings or the embedded synthetic set), only the splits that exist, the head's own settings, a Hub id
(or nothing) as base_model, no repeated rows. Each head and data source's card is read back."""

import sys
from pathlib import Path

import huggingface_hub
import numpy as np
import pytest

from eventlm.models.eventssm import modeling_flax_eventssm as M
from eventlm.models.eventssm.configuration_eventssm import EventSSMConfig
from eventlm.training.card import build_model_card, describe_data, is_hub_repo_id

sys.path.insert(0, str(Path(__file__).parent))
from test_scripts import SENSOR, TINY, _script  # noqa: E402

SMALL = dict(vocab_size=19, pad_token_id=16, bos_token_id=17, eos_token_id=18, hidden_size=8, state_size=8,
             num_ssm_blocks=2, num_stages=1, num_layers_per_stage=1, pooling_stride=2, num_labels=3,
             num_mixture_components=2, classifier_pooling="timepool")
HEADS = {"classification": M.FlaxEventSSMForSequenceClassification, "next-event": M.FlaxEventSSMForNextEventPrediction}
SOURCES = {  # build_model_card's data arguments -> what the card must say
    "hub": (dict(dataset_name="someone/shd-events"), "the Hub dataset `someone/shd-events`", ["someone/shd-events"]),
    "folder": (dict(dataset_name="/data/my-events"), "the local dataset folder `my-events`", None),
    "recordings": (dict(recordings=["/r/a.aedat", "/r/b.aedat"], recording_format="nas"),
                   "2 raw recordings (format nas): `a.aedat`, `b.aedat`", None),
    "synthetic": ({}, "the embedded synthetic dataset", None),
}


def _card(text):
    card = huggingface_hub.ModelCard(text)
    return card, card.data.to_dict()


@pytest.mark.parametrize("source", list(SOURCES))
@pytest.mark.parametrize("head", list(HEADS))
def test_card_names_the_data_and_only_the_heads_own_settings(head, source):
    model = HEADS[head](EventSSMConfig(**SMALL), seed=0)
    data, says, hub_datasets = SOURCES[source]
    metric = "accuracy" if head == "classification" else "token_nll"
    card, meta = _card(str(build_model_card(
        model, head, {"eval_loss": 1.5, f"eval_{metric}": 0.25}, model_name="m", dataset_split="validation",
        extra_results={"validation_loss": 1.5, f"validation_{metric}": 0.25}, base_model="user/base",
        confusion_image="confusion_matrix.png", **data)))
    assert says in card.text and meta.get("datasets") == hub_datasets
    assert meta["base_model"] == "user/base" and "fine-tuned from `user/base`" in card.text
    assert card.text.count("| validation | loss |") == 1  # the validation rows are the eval rows: once
    assert "no test split" in card.text and "test split was evaluated" not in card.text
    assert "confusion matrix on the validation split" in card.text and "on the test split" not in card.text
    settings = card.text.split("## Model")[1].split("## Training")[0]
    if head == "classification":
        assert "| num_labels | 3 |" in settings and "classifier_pooling" in settings
        assert "num_mixture_components" not in settings
    else:
        assert "num_labels" not in settings and "classifier_pooling" not in settings
        assert "| num_mixture_components | 2 |" in settings


def test_hub_ids_and_local_paths_are_told_apart(tmp_path):
    assert is_hub_repo_id("user/model") and is_hub_repo_id("gpt2")
    for local in (str(tmp_path), "./out/pt", "/abs/pt", "~/pt", "a/b/c"):
        assert not is_hub_repo_id(local), local
    assert describe_data(None)["id"] == "eventlm-synthetic"


def test_pretraining_card_on_a_recording_reads_back(tmp_path, capsys):
    """Next-event pretraining on a raw NAS recording (its card used to name the synthetic dataset, a test split
    and classifier settings); a fine-tuned card is read back in test_scripts.py (the chain)."""
    tmp = tmp_path
    rng = np.random.default_rng(0)
    raw = np.empty(3000, [("addr", ">u2"), ("ts", ">u4")])
    raw["addr"], raw["ts"] = rng.integers(0, SENSOR[0], raw.size), np.sort(rng.integers(0, 10**7, raw.size))
    raw.tofile(tmp / "cochlea.aedat")
    results = _script("run_next_event_pretraining").main(TINY + [
        "--recordings", str(tmp / "cochlea.aedat"), "--recording_format", "nas", "--recording_options",
        '{"channels": 16, "on_off": false}', "--window_events", "64", "--output_dir", str(tmp / "pt")])
    out = capsys.readouterr().out  # the summary says where the outputs went and where the data came from
    assert f"output: {tmp / 'pt'}" in out and f"data: 1 recording(s) read directly ({tmp / 'cochlea.aedat'})" in out
    card, meta = _card((tmp / "pt" / "README.md").read_text())
    assert "1 raw recording (format nas): `cochlea.aedat`" in card.text and "synthetic" not in card.text
    assert "datasets" not in meta and "base_model" not in meta
    index = meta["model-index"][0]["results"][0]
    assert index["dataset"]["split"] == results["eval_split"] == "validation"
    metrics = {m["type"]: m["value"] for m in index["metrics"]}
    assert metrics["loss"] == pytest.approx(results["eval_loss"], abs=1e-6)
    assert "no test split" in card.text and "test split was evaluated" not in card.text
    assert f"{results['baseline_nll']:.4f} nats/event" in card.text
    settings = card.text.split("## Model")[1].split("## Training")[0]
    assert "num_labels" not in settings and "classifier_pooling" not in settings


def test_pretraining_curves_carry_the_baseline_line(tmp_path, monkeypatch):
    import matplotlib.axes

    from eventlm.training.plots import plot_training_curves
    from eventlm.training.tasks import TASKS

    lines = []
    original = matplotlib.axes.Axes.axhline
    monkeypatch.setattr(matplotlib.axes.Axes, "axhline",
                        lambda ax, y=0, *a, **k: lines.append((ax.get_ylabel() or "?", y)) or original(ax, y, *a, **k))
    task = TASKS["next-event"]
    baselines = task.curve_baselines({"baseline_nll": 4.5, "baseline_token_nll": 3.0, "baseline_time_nll": 1.5,
                                      "eval_loss": 4.0})
    assert baselines == {"loss": 4.5, "token_nll": 3.0, "time_nll": 1.5}
    records = [{"split": s, "step": i, "loss": 5.0 - i, "token_nll": 3.0, "time_nll": 2.0 - i / 10}
               for i in range(1, 4) for s in ("train", "validation")]
    assert plot_training_curves(records, tmp_path / "c.png", task.curve_metrics, baselines=baselines).is_file()
    assert sorted(y for _, y in lines) == [1.5, 3.0, 4.5]
    assert TASKS["classification"].curve_baselines({"bag_of_channels_accuracy": 0.5}) == {}  # a test number
