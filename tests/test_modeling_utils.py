"""FlaxPreTrainedModel on a tiny dummy model (embedding + dense + batch norm under `eventssm`, two heads).

The real EventSSM's save/load acceptance tests live in test_auto.py; this file pins the base class alone.
"""

import json
import logging
import os
import pickle
from pathlib import Path
from types import SimpleNamespace

import flax
import flax.linen as nn
import huggingface_hub
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import safetensors.flax as safetensors_flax
import safetensors.numpy
from transformers import PretrainedConfig

import eventlm.modeling_flax_utils as mfu
from eventlm.modeling_flax_utils import FlaxPreTrainedModel, ModelOutput


class DummyConfig(PretrainedConfig):
    model_type = "dummyssm"

    def __init__(self, vocab_size=11, hidden_size=8, norm="batch", **kwargs):
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.norm = norm
        super().__init__(**kwargs)


class DummyBackbone(nn.Module):
    config: DummyConfig
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, input_ids, train=False):
        x = nn.Embed(self.config.vocab_size, self.config.hidden_size, name="embed")(input_ids)
        x = nn.Dense(self.config.hidden_size, dtype=self.dtype, name="dense")(x)
        if self.config.norm == "batch":
            x = nn.BatchNorm(use_running_average=not train, momentum=0.5, name="norm")(x)
        return x


class DummyClassifierModule(nn.Module):
    config: DummyConfig
    dtype: jnp.dtype = jnp.float32

    def setup(self):
        self.eventssm = DummyBackbone(self.config, self.dtype)
        self.classifier = nn.Dense(self.config.num_labels, dtype=self.dtype)

    def __call__(self, input_ids, train=False):
        return self.classifier(self.eventssm(input_ids, train).mean(axis=1))


class DummyNextEventModule(nn.Module):
    config: DummyConfig
    dtype: jnp.dtype = jnp.float32

    def setup(self):
        self.eventssm = DummyBackbone(self.config, self.dtype)
        self.next_event_head = nn.Dense(self.config.vocab_size, dtype=self.dtype)

    def __call__(self, input_ids, train=False):
        return self.next_event_head(self.eventssm(input_ids, train))


@flax.struct.dataclass
class DummyOutput(ModelOutput):
    logits: jax.Array = None
    loss: jax.Array | None = None
    batch_stats: dict | None = None


class DummyPreTrained(FlaxPreTrainedModel):
    config_class = DummyConfig

    def init_weights(self, rng, input_shape):
        return self.module.init(rng, jnp.zeros(input_shape, jnp.int32))

    def __call__(self, input_ids, params=None, batch_stats=None, train=False):
        variables = self._variables_for(params, batch_stats)
        if train and "batch_stats" in variables:
            logits, updates = self.module.apply(variables, input_ids, train=True, mutable=["batch_stats"])
            return DummyOutput(logits=logits, batch_stats=updates["batch_stats"])
        return DummyOutput(logits=self.module.apply(variables, input_ids))


class DummyForClassification(DummyPreTrained):
    module_class = DummyClassifierModule


class DummyForNextEvent(DummyPreTrained):
    module_class = DummyNextEventModule


IDS = np.random.default_rng(0).integers(0, 11, size=(3, 5)).astype(np.int32)


def _randomize(model, seed):
    """Replace every variable (params and batch statistics) by random values, so identity checks can fail."""
    rng = np.random.default_rng(seed)
    rand = lambda x: jnp.asarray(rng.normal(size=x.shape).astype(np.float32))  # noqa: E731
    model.params = jax.tree_util.tree_map(rand, model.params)
    if model.batch_stats:
        model.batch_stats = jax.tree_util.tree_map(lambda x: jnp.abs(rand(x)) + 0.1, model.batch_stats)
    return model


def _assert_trees_identical(a, b):
    fa, fb = mfu.flatten_variables(a), mfu.flatten_variables(b)
    assert fa.keys() == fb.keys()
    for key in fa:
        assert fa[key].dtype == fb[key].dtype, key
        np.testing.assert_array_equal(np.asarray(fa[key]), np.asarray(fb[key]), err_msg=key)


def _files(folder):
    return {p.name: p.read_bytes() for p in Path(folder).iterdir()}


@pytest.fixture(scope="module")
def cls_model():
    return _randomize(DummyForClassification(DummyConfig(num_labels=3)), 1)


@pytest.fixture(scope="module")
def saved_cls(cls_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("saved") / "cls"
    cls_model.save_pretrained(folder)
    return folder


# ---- construction and variables -------------------------------------------------------------------------


def test_init_collections_and_parameter_count(cls_model):
    fresh = DummyForClassification(DummyConfig(num_labels=3))
    assert set(fresh.params) == {"eventssm", "classifier"}
    assert set(fresh.params["eventssm"]) == {"embed", "dense", "norm"}
    assert set(fresh.batch_stats["eventssm"]["norm"]) == {"mean", "var"}
    # embed 11*8 + dense 8*8+8 + norm scale/bias 2*8 + classifier 8*3+3 (batch statistics not counted)
    assert fresh.num_parameters() == 11 * 8 + 8 * 8 + 8 + 16 + 8 * 3 + 3 == 203
    assert fresh.num_parameters(exclude_embeddings=True) == 203 - 88
    assert DummyForClassification(DummyConfig(num_labels=3, norm="layer")).batch_stats == {}
    with pytest.raises(TypeError, match="DummyConfig"):
        DummyForClassification(PretrainedConfig())


def test_seed_changes_init():
    a = DummyForClassification(DummyConfig(num_labels=3), seed=0).params
    b = DummyForClassification(DummyConfig(num_labels=3), seed=1).params
    assert not np.array_equal(a["classifier"]["kernel"], b["classifier"]["kernel"])


def test_params_setter_checks_structure(cls_model):
    model = DummyForClassification(DummyConfig(num_labels=3))
    params = jax.tree_util.tree_map(lambda x: x + 1.0, model.params)
    model.params = flax.core.freeze(params)  # FrozenDicts are accepted and stored plain
    assert type(model.params) is dict
    np.testing.assert_array_equal(model.params["classifier"]["bias"], params["classifier"]["bias"])
    broken = dict(params)
    del broken["classifier"]
    with pytest.raises(ValueError, match=r"missing \[params.classifier.bias, params.classifier.kernel\]"):
        model.params = broken
    with pytest.raises(TypeError, match="list"):
        model.params = [1, 2]


def test_do_init_false_holds_no_weights():
    model = DummyForClassification(DummyConfig(num_labels=3), _do_init=False)
    with pytest.raises(ValueError, match="_do_init=False"):
        model.params
    variables = model.init_weights(jax.random.PRNGKey(0), (1, 4))
    model.params = variables["params"]
    assert model(IDS, batch_stats=variables["batch_stats"]).logits.shape == (3, 3)


def test_call_under_jit_and_train_updates_batch_stats(cls_model):
    logits = jax.jit(lambda p, ids: cls_model(ids, params=p).logits)(cls_model.params, IDS)
    np.testing.assert_allclose(logits, cls_model(IDS).logits, rtol=1e-5, atol=1e-5)
    out = cls_model(IDS, train=True)
    assert set(out.keys()) == {"logits", "batch_stats"}
    assert not np.allclose(out.batch_stats["eventssm"]["norm"]["mean"], cls_model.batch_stats["eventssm"]["norm"]["mean"])


# ---- ModelOutput ------------------------------------------------------------------------------------------


def test_model_output_access_and_pytree():
    out = DummyOutput(logits=jnp.arange(3.0), loss=jnp.float32(2.5))
    assert out["logits"] is out.logits and out[1] is out.loss and out.to_tuple() == (out.logits, out.loss)
    assert "loss" in out and "batch_stats" not in out and list(out) == ["logits", "loss"] and len(out) == 2
    assert out.get("batch_stats", 7) == 7
    with pytest.raises(KeyError, match="batch_stats"):
        out["batch_stats"]
    doubled = jax.jit(lambda o: jax.tree_util.tree_map(lambda x: 2 * x, o))(out)
    assert isinstance(doubled, DummyOutput) and float(doubled.loss) == 5.0 and doubled.batch_stats is None


# ---- save_pretrained / from_pretrained --------------------------------------------------------------------


def test_save_writes_config_and_safetensors(saved_cls, cls_model):
    assert sorted(os.listdir(saved_cls)) == ["config.json", "model.safetensors"]
    assert not [p for p in saved_cls.parent.iterdir() if ".tmp-" in p.name]
    config = json.loads((saved_cls / "config.json").read_text())
    assert config["model_type"] == "dummyssm" and config["hidden_size"] == 8
    stored = safetensors.numpy.load_file(saved_cls / "model.safetensors")
    assert "params.eventssm.embed.embedding" in stored and "batch_stats.eventssm.norm.var" in stored
    np.testing.assert_array_equal(stored["batch_stats.eventssm.norm.var"], cls_model.batch_stats["eventssm"]["norm"]["var"])
    (saved_cls.parent / "plain").mkdir()  # the saved folder has the permissions of any new folder
    assert saved_cls.stat().st_mode == (saved_cls.parent / "plain").stat().st_mode


def test_roundtrip_is_bit_identical(saved_cls, cls_model):
    loaded = DummyForClassification.from_pretrained(saved_cls, seed=123)  # another seed: nothing re-initialised
    _assert_trees_identical(loaded.variables, cls_model.variables)
    np.testing.assert_array_equal(loaded(IDS).logits, cls_model(IDS).logits)
    assert loaded.config.to_dict() == cls_model.config.to_dict()


def test_numpy_params_as_set_by_a_training_loop_roundtrip(tmp_path, cls_model):
    model = DummyForClassification(DummyConfig(num_labels=3))
    model.params = jax.device_get(cls_model.params)  # numpy leaves
    model.batch_stats = jax.device_get(cls_model.batch_stats)
    model.save_pretrained(tmp_path / "np")
    _assert_trees_identical(DummyForClassification.from_pretrained(tmp_path / "np").variables, cls_model.variables)


def test_transposed_numpy_views_are_saved_in_their_logical_order(tmp_path, cls_model):
    """safetensors writes raw memory: a Fortran-ordered view (a converter's transposed weights) must be saved
    as the array it shows, not as its buffer."""
    model = DummyForClassification(DummyConfig(num_labels=3))
    params = jax.tree_util.tree_map(lambda a: np.asfortranarray(np.asarray(a)), jax.device_get(cls_model.params))
    assert any(not leaf.flags.c_contiguous for leaf in jax.tree_util.tree_leaves(params))
    model.params = params
    model.batch_stats = jax.device_get(cls_model.batch_stats)
    model.save_pretrained(tmp_path / "f")
    _assert_trees_identical(DummyForClassification.from_pretrained(tmp_path / "f").variables, cls_model.variables)


def test_dtype_is_the_compute_dtype(saved_cls, cls_model):
    loaded = DummyForClassification.from_pretrained(saved_cls, dtype=jnp.bfloat16)
    assert loaded.module.dtype == jnp.bfloat16 and loaded.dtype == jnp.bfloat16
    _assert_trees_identical(loaded.params, cls_model.params)  # stored float32 weights stay float32
    assert loaded(IDS).logits.dtype == jnp.bfloat16


def test_layer_norm_model_has_no_batch_stats_in_file(tmp_path):
    model = _randomize(DummyForClassification(DummyConfig(num_labels=2, norm="layer")), 2)
    model.save_pretrained(tmp_path / "m")
    assert all(k.startswith("params.") for k in safetensors.numpy.load_file(tmp_path / "m" / "model.safetensors"))
    loaded = DummyForClassification.from_pretrained(tmp_path / "m")
    assert loaded.batch_stats == {}
    _assert_trees_identical(loaded.params, model.params)


def test_save_into_existing_folder_keeps_other_files(tmp_path, cls_model):
    folder = tmp_path / "existing"
    folder.mkdir()
    (folder / "tokenizer_config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"old weights")
    cls_model.save_pretrained(folder)
    assert sorted(os.listdir(folder)) == ["config.json", "model.safetensors", "tokenizer_config.json"]
    _assert_trees_identical(DummyForClassification.from_pretrained(folder).params, cls_model.params)
    assert [p.name for p in tmp_path.iterdir()] == ["existing"]


@pytest.mark.parametrize("existing", [True, False])
def test_failed_save_damages_nothing(tmp_path, monkeypatch, cls_model, existing):
    folder = tmp_path / "model"
    if existing:
        cls_model.save_pretrained(folder)
    before = _files(folder) if existing else None

    def broken_save_file(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"half a file")  # the disk fills up mid-write
        raise OSError("No space left on device")

    monkeypatch.setattr(safetensors_flax, "save_file", broken_save_file)
    other = _randomize(DummyForClassification(DummyConfig(num_labels=3)), 9)
    with pytest.raises(OSError, match="No space left"):
        other.save_pretrained(folder)
    assert [p.name for p in tmp_path.iterdir()] == (["model"] if existing else [])
    if existing:
        assert _files(folder) == before


def test_save_to_a_file_path_is_refused(tmp_path, cls_model):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        cls_model.save_pretrained(tmp_path / "f")


def test_truncated_safetensors_raises_clear_error(tmp_path, saved_cls):
    folder = tmp_path / "truncated"
    folder.mkdir()
    (folder / "config.json").write_bytes((saved_cls / "config.json").read_bytes())
    data = (saved_cls / "model.safetensors").read_bytes()
    for cut in (0, 7, len(data) // 2, len(data) - 1):
        (folder / "model.safetensors").write_bytes(data[:cut])
        with pytest.raises(ValueError, match=r"model\.safetensors .*truncated or corrupt"):
            DummyForClassification.from_pretrained(folder)


def test_wrong_shaped_tensor_raises_naming_key_and_shapes(tmp_path, saved_cls):
    folder = tmp_path / "wrong"
    folder.mkdir()
    (folder / "config.json").write_bytes((saved_cls / "config.json").read_bytes())
    stored = safetensors.numpy.load_file(saved_cls / "model.safetensors")
    stored["params.eventssm.dense.kernel"] = np.zeros((8, 6), np.float32)
    safetensors.numpy.save_file(stored, folder / "model.safetensors")
    with pytest.raises(ValueError, match=r"params\.eventssm\.dense\.kernel: checkpoint \(8, 6\) vs model \(8, 8\)"):
        DummyForClassification.from_pretrained(folder)


def test_num_labels_override_needs_ignore_mismatched_sizes(saved_cls, cls_model, caplog):
    with pytest.raises(ValueError, match=r"params\.classifier\.kernel: checkpoint \(8, 3\) vs model \(8, 5\)"):
        DummyForClassification.from_pretrained(saved_cls, num_labels=5)
    with caplog.at_level(logging.WARNING, logger="eventlm.modeling_flax_utils"):
        model = DummyForClassification.from_pretrained(saved_cls, num_labels=5, ignore_mismatched_sizes=True)
    assert model.config.num_labels == 5 and model.params["classifier"]["kernel"].shape == (8, 5)
    _assert_trees_identical(model.params["eventssm"], cls_model.params["eventssm"])
    assert "re-initialized" in caplog.text and "params.classifier.kernel" in caplog.text


def test_unknown_override_and_given_config(saved_cls):
    with pytest.raises(TypeError, match="hidden_sise"):
        DummyForClassification.from_pretrained(saved_cls, hidden_sise=4)
    config = DummyConfig(num_labels=3)
    model = DummyForClassification.from_pretrained(saved_cls, config=config, id2label={0: "a", 1: "b", 2: "c"})
    assert model.config.id2label[2] == "c" and config.id2label[2] == "LABEL_2"  # the caller's config is untouched


def test_head_swap_keeps_backbone_and_warns(tmp_path, caplog):
    nep = _randomize(DummyForNextEvent(DummyConfig()), 3)
    nep.save_pretrained(tmp_path / "nep")
    with caplog.at_level(logging.WARNING, logger="eventlm.modeling_flax_utils"):
        clf = DummyForClassification.from_pretrained(tmp_path / "nep", num_labels=4, seed=5)
    _assert_trees_identical(clf.params["eventssm"], nep.params["eventssm"])
    _assert_trees_identical(clf.batch_stats, nep.batch_stats)
    fresh = DummyForClassification(DummyConfig(num_labels=4), seed=5)
    _assert_trees_identical(clf.params["classifier"], fresh.params["classifier"])  # initialised as from_config
    assert "not used" in caplog.text and "params.next_event_head.kernel" in caplog.text
    assert "newly initialized" in caplog.text and "params.classifier.kernel" in caplog.text
    assert "params.eventssm" not in caplog.text


def test_missing_and_foreign_files(tmp_path, saved_cls):
    with pytest.raises(FileNotFoundError, match="neither an existing local folder"):
        DummyForClassification.from_pretrained(tmp_path / "nowhere" / "deeper")
    with pytest.raises(ValueError, match="is a file"):
        DummyForClassification.from_pretrained(saved_cls / "model.safetensors")
    folder = tmp_path / "torch"
    folder.mkdir()
    (folder / "config.json").write_bytes((saved_cls / "config.json").read_bytes())
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04pickle")
    with pytest.raises(FileNotFoundError, match=r"pytorch_model\.bin.*never reads"):
        DummyForClassification.from_pretrained(folder)
    (folder / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"config\.json is not valid JSON"):
        DummyForClassification.from_pretrained(folder)


def test_other_model_type_is_refused(tmp_path, saved_cls):
    folder = tmp_path / "other"
    folder.mkdir()
    config = json.loads((saved_cls / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "bert"}))
    (folder / "model.safetensors").write_bytes((saved_cls / "model.safetensors").read_bytes())
    with pytest.raises(ValueError, match="'bert' model"):
        DummyForClassification.from_pretrained(folder)


def test_nothing_is_unpickled(monkeypatch, saved_cls, tmp_path, cls_model):
    def refuse(*args, **kwargs):
        raise AssertionError("pickle used")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    cls_model.save_pretrained(tmp_path / "again")
    DummyForClassification.from_pretrained(saved_cls)
    DummyForNextEvent.from_pretrained(saved_cls)


# ---- dtype casts -----------------------------------------------------------------------------------------


def test_casts_with_mask_and_bf16_roundtrip(tmp_path, cls_model, caplog):
    bf16 = cls_model.to_bf16()
    assert all(x.dtype == jnp.bfloat16 for x in jax.tree_util.tree_leaves(bf16))
    assert cls_model.params["classifier"]["kernel"].dtype == jnp.float32  # the model is unchanged
    np.testing.assert_array_equal(
        cls_model.to_fp32(bf16)["classifier"]["kernel"],
        np.asarray(cls_model.params["classifier"]["kernel"]).astype(jnp.bfloat16).astype(np.float32),
    )
    no_embed = lambda p: flax.traverse_util.path_aware_map(lambda path, _: "embed" not in path, p)  # noqa: E731
    half = cls_model.to_fp16(mask=no_embed)
    assert half["eventssm"]["embed"]["embedding"].dtype == jnp.float32
    assert half["eventssm"]["dense"]["kernel"].dtype == jnp.float16
    tree_mask = jax.tree_util.tree_map(lambda _: False, cls_model.params)
    tree_mask["classifier"]["bias"] = True
    masked = cls_model.to_bf16(mask=tree_mask)
    assert masked["classifier"]["bias"].dtype == jnp.bfloat16 and masked["classifier"]["kernel"].dtype == jnp.float32

    model = DummyForClassification(DummyConfig(num_labels=3))
    model.params = bf16
    model.save_pretrained(tmp_path / "bf16")
    with caplog.at_level(logging.WARNING, logger="eventlm.modeling_flax_utils"):
        loaded = DummyForClassification.from_pretrained(tmp_path / "bf16")
    _assert_trees_identical(loaded.params, bf16)
    assert "half precision" in caplog.text


# ---- Hub: snapshot_download, create_repo and upload_folder mocked at the client boundary -------------


def test_from_pretrained_by_repo_id(monkeypatch, saved_cls, cls_model):
    calls = []

    def fake_snapshot_download(repo_id, **kwargs):
        calls.append((repo_id, kwargs))
        return str(saved_cls)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    model = DummyForClassification.from_pretrained("someone/dummy", revision="v1", token="tok", local_files_only=True)
    _assert_trees_identical(model.variables, cls_model.variables)
    (repo_id, kwargs), = calls
    assert repo_id == "someone/dummy" and kwargs["revision"] == "v1" and kwargs["token"] == "tok"
    assert kwargs["local_files_only"] is True
    assert sorted(kwargs["allow_patterns"]) == ["config.json", "model.safetensors"]


def test_hub_failure_becomes_clear_oserror(monkeypatch):
    def offline(repo_id, **kwargs):
        raise huggingface_hub.errors.LocalEntryNotFoundError("cannot reach the Hub")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(OSError, match="could not get model 'someone/missing'.*cannot reach the Hub"):
        DummyForClassification.from_pretrained("someone/missing")


class _FakeHub:
    def __init__(self, monkeypatch):
        self.created, self.uploads = [], []
        monkeypatch.setattr(huggingface_hub, "create_repo", self.create_repo)
        monkeypatch.setattr(huggingface_hub, "upload_folder", self.upload_folder)

    def create_repo(self, repo_id, **kwargs):
        self.created.append((repo_id, kwargs))
        return SimpleNamespace(repo_id=repo_id if "/" in repo_id else f"me/{repo_id}")  # like RepoUrl.repo_id

    def upload_folder(self, *, repo_id, folder_path, **kwargs):
        ignore = kwargs.get("ignore_patterns") or []
        files = {p.name: p.read_bytes() for p in Path(folder_path).iterdir() if not p.name.startswith(".")}
        self.uploads.append((repo_id, files, {**kwargs, "folder_path": Path(folder_path)}))
        assert ".*" in ignore  # hidden temp files are never uploaded
        return "commit-info"


def test_push_to_hub_uploads_config_weights_and_card(monkeypatch, cls_model, tmp_path):
    hub = _FakeHub(monkeypatch)
    result = cls_model.push_to_hub("someone/dummy", private=True, token="tok", model_card="# Dummy card\n")
    assert result == "commit-info"
    assert hub.created == [("someone/dummy", {"token": "tok", "private": True, "exist_ok": True})]
    (repo_id, files, kwargs), = hub.uploads
    assert repo_id == "someone/dummy" and sorted(files) == ["README.md", "config.json", "model.safetensors"]
    assert files["README.md"] == b"# Dummy card\n" and kwargs["token"] == "tok"
    assert kwargs["commit_message"] == "Upload DummyForClassification"
    (tmp_path / "pushed").mkdir()
    for name, data in files.items():
        (tmp_path / "pushed" / name).write_bytes(data)
    _assert_trees_identical(DummyForClassification.from_pretrained(tmp_path / "pushed").variables, cls_model.variables)


def test_save_pretrained_push_uploads_the_folder(monkeypatch, cls_model, tmp_path):
    hub = _FakeHub(monkeypatch)
    cls_model.save_pretrained(tmp_path / "my-model", push_to_hub=True, commit_message="first")
    (repo_id, files, kwargs), = hub.uploads
    assert repo_id == "me/my-model" and sorted(files) == ["config.json", "model.safetensors"]
    assert kwargs["commit_message"] == "first" and kwargs["folder_path"] == tmp_path / "my-model"
    card = huggingface_hub.ModelCard("---\nlicense: apache-2.0\n---\n# My model\n")
    cls_model.save_pretrained(tmp_path / "my-model", push_to_hub=True, repo_id="org/named", model_card=card)
    repo_id, files, kwargs = hub.uploads[-1]
    assert repo_id == "org/named" and sorted(files) == ["README.md", "config.json", "model.safetensors"]
    assert huggingface_hub.ModelCard(files["README.md"].decode()).data.license == "apache-2.0"
