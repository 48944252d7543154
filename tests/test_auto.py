"""Auto classes, transformers registration, and the real EventSSM's save / load / push acceptance tests."""

import importlib.util
import json
import logging
import os
import pickle
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import huggingface_hub
import jax
import numpy as np
import pytest
import safetensors.numpy
import transformers

from eventlm import auto
from eventlm.auto import AutoModel, AutoModelForNextEventPrediction, AutoModelForSequenceClassification
from eventlm.modeling_flax_utils import flatten_variables
from eventlm.models.eventssm import modeling_flax_eventssm as modeling
from eventlm.models.eventssm.configuration_eventssm import EventSSMConfig

REPO = Path(__file__).resolve().parents[1]
VOCAB, PAD = 12, 9  # 9 channels, then pad / bos / eos

# ---- registration and dispatch (no model needed) ----------------------------------------------------


def _run_python(code):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=env, timeout=120)


def test_import_eventlm_prints_nothing():
    result = _run_python("import eventlm")
    assert result.returncode == 0 and result.stdout == "" and result.stderr == "", result


def test_auto_config_knows_eventssm_after_import(tmp_path):
    EventSSMConfig.from_preset("tiny", hidden_size=24).save_pretrained(tmp_path)
    code = (
        "import eventlm\nfrom transformers import AutoConfig\n"
        f"c = AutoConfig.from_pretrained({str(tmp_path)!r})\nprint(type(c).__module__, type(c).__name__, c.hidden_size)"
    )
    result = _run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["eventlm.models.eventssm.configuration_eventssm", "EventSSMConfig", "24"]
    # and in this process
    config = transformers.AutoConfig.from_pretrained(tmp_path)
    assert type(config) is EventSSMConfig and config.hidden_size == 24


def test_registration_is_idempotent_and_guards_torch(monkeypatch):
    auto.register_with_transformers()
    auto.register_with_transformers()
    assert transformers.AutoConfig.for_model("eventssm").__class__ is EventSSMConfig
    calls = []  # transformers.AutoModel is a torch-only placeholder here: stand in for it
    fake_auto_model = SimpleNamespace(register=lambda *a, **k: calls.append((a, k)))
    monkeypatch.setattr(auto, "transformers", SimpleNamespace(AutoConfig=transformers.AutoConfig, AutoModel=fake_auto_model))
    monkeypatch.setattr(auto, "_torch_available", lambda: False)
    auto.register_with_transformers()
    assert calls == []  # no torch here: transformers.AutoModel is left alone
    monkeypatch.setattr(auto, "_torch_available", lambda: True)
    auto.register_with_transformers()
    registered = {config_class.model_type: (config_class, model_class, kwargs) for (config_class, model_class), kwargs in calls}
    assert sorted(registered) == sorted(auto.MODEL_TYPES)  # one registration per model family
    config_class, model_class, kwargs = registered["eventssm"]
    assert config_class is EventSSMConfig and model_class.__name__ == "FlaxEventSSMModel" and kwargs == {"exist_ok": True}


def test_unknown_model_type_lists_known_types(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "not-a-model", "hidden_size": 4}))
    (tmp_path / "model.safetensors").write_bytes(b"")
    for auto_class, known in ((AutoModel, "'eventssm', 'spike-driven-transformer'"),
                              (AutoModelForSequenceClassification, "'eventssm', 'spike-driven-transformer'"),
                              (AutoModelForNextEventPrediction, "'eventssm', 'spike-driven-transformer'")):
        with pytest.raises(ValueError, match=rf"'not-a-model'.*known model types: \[{known}\]"):
            auto_class.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"known model types: \['eventssm', 'spike-driven-transformer'\]"):
        AutoModel.from_config(SimpleNamespace(model_type="bert"))
    (tmp_path / "config.json").write_text(json.dumps({"hidden_size": 4}))
    with pytest.raises(ValueError, match="has no 'model_type'"):
        AutoModel.from_pretrained(tmp_path)


def test_auto_classes_are_not_instantiated_directly():
    with pytest.raises(EnvironmentError, match="from_pretrained"):
        AutoModel()


def test_register_a_custom_model(monkeypatch):
    class OtherConfig(transformers.PretrainedConfig):
        model_type = "other-ssm"

    class OtherModel:
        config_class = OtherConfig

        @classmethod
        def from_config(cls, config, **kwargs):
            return ("built", config, kwargs)

    monkeypatch.setattr(AutoModelForSequenceClassification, "_extra", {})
    AutoModelForSequenceClassification.register(OtherConfig, OtherModel)
    config = OtherConfig()
    assert AutoModelForSequenceClassification.from_config(config, seed=3) == ("built", config, {"seed": 3})
    assert "other-ssm" not in AutoModel._known_types()  # registered for that Auto class only
    with pytest.raises(ValueError, match="already registered"):
        AutoModelForSequenceClassification.register(OtherConfig, OtherModel)
    with pytest.raises(ValueError, match="config_class"):
        AutoModel.register(EventSSMConfig, OtherModel)


# ---- the real EventSSM ---------------------------------------------------------------------------------

CLASSES = {
    AutoModel: modeling.FlaxEventSSMModel,
    AutoModelForSequenceClassification: modeling.FlaxEventSSMForSequenceClassification,
    AutoModelForNextEventPrediction: modeling.FlaxEventSSMForNextEventPrediction,
}


def _config(**overrides):
    settings = dict(
        vocab_size=VOCAB, pad_token_id=PAD, bos_token_id=10, eos_token_id=11, hidden_size=8, state_size=4,
        num_ssm_blocks=1, num_stages=1, num_layers_per_stage=2, pooling_stride=2, num_labels=3,
        num_mixture_components=2, dropout=0.0,
    )
    return EventSSMConfig.from_preset("tiny", **{**settings, **overrides})


def _inputs(seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, PAD, size=(2, 12)).astype(np.int32)
    timestamps = (1_000_000 + np.cumsum(rng.integers(0, 3_000, size=(2, 12)), axis=1)).astype(np.int64)
    mask = np.ones((2, 12), np.int32)
    mask[1, 8:] = 0
    ids[1, 8:] = PAD
    return dict(input_ids=ids, timestamps=timestamps, attention_mask=mask)


def _flat(model):
    return {k: np.asarray(v) for k, v in flatten_variables(model.variables).items()}


def _assert_same_variables(a, b):
    fa, fb = _flat(a), _flat(b)
    assert fa.keys() == fb.keys()
    for key in fa:
        assert fa[key].dtype == fb[key].dtype, key
        np.testing.assert_array_equal(fa[key], fb[key], err_msg=key)


def _perturb_batch_stats(model, seed):
    """Random running statistics (init has zeros / ones), so that a lost batch_stats would show."""
    rng = np.random.default_rng(seed)
    model.batch_stats = jax.tree_util.tree_map(
        lambda x: np.abs(rng.normal(size=x.shape)).astype(np.float32) + 0.5, model.batch_stats
    )


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """One saved folder per head: classification with batch norm, next-event prediction, and the base model.

    Building a model compiles its init, the slow part on 2 cores: the base model comes from the classifier's
    folder (a load with unexpected keys only, nothing initialised)."""
    root = tmp_path_factory.mktemp("auto")
    models = {
        "cls": modeling.FlaxEventSSMForSequenceClassification(_config(norm="batch"), seed=1),
        "nep": modeling.FlaxEventSSMForNextEventPrediction(_config(), seed=2),
    }
    _perturb_batch_stats(models["cls"], 0)
    assert models["cls"].batch_stats, "norm='batch' must give batch statistics"
    models["cls"].save_pretrained(root / "cls")
    models["nep"].save_pretrained(root / "nep")
    models["base"] = modeling.FlaxEventSSMModel.from_pretrained(root / "cls")
    models["base"].save_pretrained(root / "base")
    return root, models


def test_model_files_follow_the_contract(saved):
    root, models = saved
    keys = set(safetensors.numpy.load_file(root / "cls" / "model.safetensors"))
    assert "params.eventssm.embed.embedding" in keys
    assert any(k.startswith("params.classifier.") for k in keys)
    assert any(k.startswith("batch_stats.eventssm.") for k in keys)
    assert any(k.startswith("params.next_event_head.") for k in safetensors.numpy.load_file(root / "nep" / "model.safetensors"))
    assert sorted(os.listdir(root / "cls")) == ["config.json", "model.safetensors"]
    assert json.loads((root / "cls" / "config.json").read_text())["model_type"] == "eventssm"


@pytest.mark.parametrize("head", ["cls", "nep"])
def test_roundtrip_bit_identical_params_and_logits(saved, head):
    root, models = saved
    auto_class = AutoModelForSequenceClassification if head == "cls" else AutoModelForNextEventPrediction
    loaded = auto_class.from_pretrained(root / head, seed=99)
    assert type(loaded) is type(models[head])
    _assert_same_variables(loaded, models[head])
    assert loaded.config.to_dict() == models[head].config.to_dict()
    inputs = _inputs()
    np.testing.assert_array_equal(np.asarray(loaded(**inputs).logits), np.asarray(models[head](**inputs).logits))


def test_every_auto_class_returns_its_class(saved):
    root, _ = saved
    folders = {AutoModel: "base", AutoModelForSequenceClassification: "cls", AutoModelForNextEventPrediction: "nep"}
    for auto_class, model_class in CLASSES.items():
        assert type(auto_class.from_pretrained(root / folders[auto_class])) is model_class
        assert type(auto_class.from_config(_config(), _do_init=False)) is model_class
    assert type(AutoModel.from_pretrained(root / "nep")) is modeling.FlaxEventSSMModel  # a head's backbone


def test_nep_checkpoint_into_classifier_keeps_backbone_and_warns(saved, caplog):
    root, models = saved
    with caplog.at_level(logging.WARNING, logger="eventlm.modeling_flax_utils"):
        clf = AutoModelForSequenceClassification.from_pretrained(root / "nep", num_labels=5)
    assert clf.config.num_labels == 5
    assert "next_event_head" in caplog.text and "not used" in caplog.text
    assert "params.classifier" in caplog.text and "newly initialized" in caplog.text
    backbone = {k: v for k, v in _flat(models["nep"]).items() if k.startswith("params.eventssm.")}
    loaded = _flat(clf)
    for key, value in backbone.items():
        np.testing.assert_array_equal(loaded[key], value, err_msg=key)
    head = {k: v.shape for k, v in loaded.items() if k.startswith("params.classifier.")}
    assert head and all(shape[-1] == 5 for shape in head.values()), head


def test_truncated_and_wrong_shaped_weights_raise(saved, tmp_path):
    root, _ = saved
    data = (root / "cls" / "model.safetensors").read_bytes()
    config = (root / "cls" / "config.json").read_bytes()
    (tmp_path / "config.json").write_bytes(config)
    (tmp_path / "model.safetensors").write_bytes(data[: len(data) - 100])
    with pytest.raises(ValueError, match=r"model\.safetensors .*truncated or corrupt"):
        AutoModelForSequenceClassification.from_pretrained(tmp_path)
    stored = safetensors.numpy.load_file(root / "cls" / "model.safetensors")
    stored["params.eventssm.embed.embedding"] = np.zeros((VOCAB + 1, 8), np.float32)
    safetensors.numpy.save_file(stored, tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match=rf"params\.eventssm\.embed\.embedding: checkpoint \({VOCAB + 1}, 8\) vs model"):
        AutoModelForSequenceClassification.from_pretrained(tmp_path)


def test_nothing_is_unpickled(saved, tmp_path, monkeypatch):
    root, models = saved

    def refuse(*args, **kwargs):
        raise AssertionError("pickle used")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    models["cls"].save_pretrained(tmp_path / "m")
    _assert_same_variables(AutoModelForSequenceClassification.from_pretrained(tmp_path / "m"), models["cls"])
    AutoModel.from_pretrained(tmp_path / "m")


def test_from_pretrained_by_repo_id_through_snapshot_download(saved, monkeypatch):
    root, models = saved
    calls = []

    def fake_snapshot_download(repo_id, **kwargs):
        calls.append((repo_id, kwargs))
        return str(root / "cls")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    model = AutoModelForSequenceClassification.from_pretrained("eventlm/tiny-shd", revision="main")
    assert type(model) is modeling.FlaxEventSSMForSequenceClassification
    _assert_same_variables(model, models["cls"])
    assert calls and all(c[0] == "eventlm/tiny-shd" and c[1]["revision"] == "main" for c in calls)


def test_push_to_hub_at_the_client_boundary(saved, monkeypatch, tmp_path):
    root, models = saved
    uploads = []
    monkeypatch.setattr(huggingface_hub, "create_repo", lambda repo_id, **kw: SimpleNamespace(repo_id=repo_id))

    def fake_upload_folder(*, repo_id, folder_path, **kwargs):
        uploads.append((repo_id, {p.name: p.read_bytes() for p in Path(folder_path).iterdir()}))

    monkeypatch.setattr(huggingface_hub, "upload_folder", fake_upload_folder)
    models["cls"].push_to_hub("me/tiny-cls", model_card="---\nlicense: apache-2.0\n---\n# tiny\n")
    (repo_id, files), = uploads
    assert repo_id == "me/tiny-cls" and sorted(files) == ["README.md", "config.json", "model.safetensors"]
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    _assert_same_variables(AutoModelForSequenceClassification.from_pretrained(tmp_path), models["cls"])


def test_transformers_auto_classes_where_they_work(saved):
    """What the README says: transformers.AutoConfig knows eventlm's model types once eventlm is imported (not
    before: transformers has no plugin hook, and eventlm writes no remote code); transformers.AutoModel loads
    eventlm's Flax model where torch is installed (it passes trust_remote_code / adapter_kwargs along)."""
    root, _ = saved
    result = _run_python(f"import transformers\ntransformers.AutoConfig.from_pretrained({str(root / 'base')!r})")
    assert result.returncode != 0 and "model type `eventssm`" in result.stderr
    assert type(transformers.AutoConfig.from_pretrained(root / "base")) is EventSSMConfig  # eventlm imported here
    if importlib.util.find_spec("torch") is None:
        pytest.skip("torch is not installed: transformers.AutoModel is a torch-only placeholder")
    auto.register_with_transformers()
    model = transformers.AutoModel.from_pretrained(root / "base")
    assert type(model) is modeling.FlaxEventSSMModel
