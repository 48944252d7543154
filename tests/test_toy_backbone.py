"""Proof of the event-model contract (issue 11): a backbone defined only in this file (a causal running
mean of the event embeddings, decayed by the time gaps) registers itself and goes through train → save →
Auto load → evaluate → stream with parity → generate → push, with no change to any library file."""

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import flax.linen as nn
import huggingface_hub
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from transformers import AutoConfig

from eventlm import AutoModelForNextEventPrediction, AutoModelForSequenceClassification
from eventlm.auto import load_pretrained
from eventlm.configuration_events import EventModelConfig
from eventlm.modeling_events import (BackboneOutput, FlaxEventPreTrainedModel, ForNextEventPrediction,
                                     ForSequenceClassification, NextEventPredictionModule,
                                     SequenceClassificationModule, valid_mask)
from eventlm.streaming import BackboneChunk, Streamer, generate, init_stream, stream


class ToyConfig(EventModelConfig):
    model_type = "toy-decayed-mean"
    vocab_size: int = 13
    pad_token_id: int = 10
    bos_token_id: int = 11
    eos_token_id: int = 12
    hidden_size: int = 6
    num_mixture_components: int = 2
    dropout: float = 0.0
    decay_per_unit: float = 0.3  # its own field: the running sums fade by exp(−decay·Δt)


class ToyBackbone(nn.Module):
    """h_k = tanh(W·(s_k / c_k)) with s_k = e^{−aΔt_k}·s_{k−1} + emb(x_k), c_k = e^{−aΔt_k}·c_{k−1} + 1."""

    config: Any
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, input_ids, time_deltas, attention_mask, train=False, output_hidden_states=False):
        cfg = self.config
        mask = jnp.asarray(valid_mask(attention_mask, input_ids.shape))
        dt = jnp.where(mask, time_deltas, 0.0)
        emb = nn.Embed(cfg.vocab_size, cfg.hidden_size, name="embed")(jnp.where(mask, input_ids, 0)) * mask[..., None]
        decay = jnp.exp(-cfg.decay_per_unit * dt)

        def step(carry, k):
            s, c = carry
            s = decay[:, k, None] * s + emb[:, k]
            c = decay[:, k] * c + mask[:, k]
            return (s, c), s / jnp.maximum(c, 1e-6)[:, None]

        zeros = (jnp.zeros(emb.shape[::2]), jnp.zeros(emb.shape[:1]))
        _, means = jax.lax.scan(step, zeros, jnp.arange(emb.shape[1]))
        h = jnp.tanh(nn.Dense(cfg.hidden_size, name="mix")(jnp.swapaxes(means, 0, 1))) * mask[..., None]
        return BackboneOutput(last_hidden_state=h, pooled_mask=mask, pooled_time_deltas=dt, inputs_embeds=emb,
                              total_time=jnp.sum(dt, axis=1), hidden_states=(emb, h) if output_hidden_states else None)


class ToyStreamer(Streamer):
    """State: the decayed sums (s, c). Every position is final (the backbone does not pool)."""

    def backbone_state_template(self):
        return (jax.ShapeDtypeStruct((self.config.hidden_size,), np.float32), jax.ShapeDtypeStruct((), np.float32))

    def backbone_chunk(self, consts, state, tokens, dt, n):
        params = consts["variables"]["params"]["toy"]
        valid = jnp.arange(tokens.shape[0]) < n
        emb = params["embed"]["embedding"][tokens] * valid[:, None]
        decay = jnp.exp(-self.config.decay_per_unit * dt)

        def step(carry, k):
            s, c = carry
            s, c = decay[k] * s + emb[k], decay[k] * c + valid[k]
            return (s, c), s / jnp.maximum(c, 1e-6)

        new_state, means = jax.lax.scan(step, state, jnp.arange(tokens.shape[0]))
        mix = params["mix"]
        h = jnp.tanh(means @ mix["kernel"] + mix["bias"]) * valid[:, None]
        return BackboneChunk(h, dt, valid, n, 0, emb, new_state)


class ToyPreTrainedModel(FlaxEventPreTrainedModel):
    config_class = ToyConfig
    base_model_prefix = "toy"
    streamer_class = ToyStreamer


class ToyForSequenceClassification(ForSequenceClassification, ToyPreTrainedModel):
    module_class = type("ToyClsModule", (SequenceClassificationModule,), {"backbone_class": ToyBackbone,
                                                                            "backbone_name": "toy"})


class ToyForNextEventPrediction(ForNextEventPrediction, ToyPreTrainedModel):
    module_class = type("ToyNeModule", (NextEventPredictionModule,), {"backbone_class": ToyBackbone,
                                                                       "backbone_name": "toy"})


@pytest.fixture(scope="module", autouse=True)
def registered():
    AutoConfig.register(ToyConfig.model_type, ToyConfig, exist_ok=True)
    AutoModelForSequenceClassification.register(ToyConfig, ToyForSequenceClassification, exist_ok=True)
    AutoModelForNextEventPrediction.register(ToyConfig, ToyForNextEventPrediction, exist_ok=True)
    yield
    AutoModelForSequenceClassification._extra.pop(ToyConfig.model_type, None)
    AutoModelForNextEventPrediction._extra.pop(ToyConfig.model_type, None)


def rows(n, seed=0):
    """Hub rows on a 10-channel audio sensor; the class decides which channels fire."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        label = int(rng.integers(0, 3))
        k = int(rng.integers(10, 24))
        out.append({"t": np.sort(rng.integers(0, 20_000, k)).astype(np.int64),
                    "x": ((rng.integers(0, 3, k) + 3 * label) % 10).astype(np.int16),
                    "y": np.zeros(k, np.int16), "p": np.zeros(k, np.int8), "label": label})
    return out


def _trainer(model, out_dir, task):
    from eventlm.data.collator import EventCollator
    from eventlm.tokenization_events import EventTokenizer
    from eventlm.training.arguments import DataArguments, ModelArguments, TrainingArguments, resolve_presets
    from eventlm.training.trainer import Trainer

    args = TrainingArguments(output_dir=str(out_dir), max_steps=8, per_device_train_batch_size=8,
                             per_device_eval_batch_size=8, ssm_base_lr=1e-3, warmup_epochs=0.0, logging_steps=1,
                             eval_strategy="no", disable_tqdm=True, report_to="none", seed=3)
    resolve_presets(ModelArguments(preset="tiny"), DataArguments(), args)
    tok = EventTokenizer(sensor_size=(10, 1, 1))
    assert tok.vocab_size == model.config.vocab_size
    collator = EventCollator(tok, pad_to_multiple_of=8, task=task, num_labels=3 if task == "classification" else None)
    return Trainer(model, args, rows(48), rows(16, seed=1), collator)


def _random_events(seed, batch=2, length=23):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 10, (batch, length))
    return ids, 5_000_000 + np.cumsum(rng.choice([0, 3, 400, 2500, 9000], size=(batch, length)), axis=1)


def test_a_backbone_defined_in_a_test_goes_through_the_whole_library(tmp_path, monkeypatch):
    config = ToyConfig(num_labels=3)
    model = AutoModelForSequenceClassification.from_config(config, seed=0)
    assert type(model) is ToyForSequenceClassification
    before = jax.tree_util.tree_map(np.asarray, model.params)

    # train → evaluate (the task comes from the model)
    trainer = _trainer(model, tmp_path / "run", "classification")
    try:
        trainer.train(resume=False)
        metrics = trainer.evaluate(prefix="eval").metrics
    finally:
        trainer.close()
    assert np.isfinite(metrics["eval_loss"]) and 0.0 <= metrics["eval_accuracy"] <= 1.0
    moved = max(float(np.max(np.abs(np.asarray(a) - b))) for a, b in
                zip(jax.tree_util.tree_leaves(model.params), jax.tree_util.tree_leaves(before)))
    assert moved > 1e-4  # trained weights, not fresh ones

    # save → Auto load (the class from config.json's architectures)
    model.save_pretrained(tmp_path / "saved")
    loaded = load_pretrained(tmp_path / "saved")
    assert type(loaded) is ToyForSequenceClassification
    ids, ts = _random_events(0)
    np.testing.assert_array_equal(np.asarray(loaded(ids, ts).logits), np.asarray(model(ids, ts).logits))

    # stream with parity: the prediction after every chunk = the full forward on that prefix
    state = init_stream(loaded, 2)
    for start in range(0, ids.shape[1], 5):
        out, state = stream(loaded, ids[:, start:start + 5], ts[:, start:start + 5], state)
        prefix = np.zeros(ids.shape, np.int32)
        prefix[:, :start + 5] = 1
        ref = np.asarray(loaded(ids, ts, attention_mask=prefix).logits)
        np.testing.assert_allclose(np.asarray(out.logits), ref, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="CPU streaming kernel cannot run this model"):
        stream(loaded, ids[:, :1], ts[:, :1], init_stream(loaded, 2), implementation="cpu-kernel")

    # push at the client boundary
    uploads = []
    monkeypatch.setattr(huggingface_hub, "create_repo", lambda repo_id, **kw: SimpleNamespace(repo_id=repo_id))
    monkeypatch.setattr(huggingface_hub, "upload_folder", lambda *, repo_id, folder_path, **kw: uploads.append(
        (repo_id, {p.name: p.read_bytes() for p in Path(folder_path).iterdir()})))
    loaded.push_to_hub("me/toy")
    (repo_id, files), = uploads
    assert repo_id == "me/toy" and sorted(files) == ["config.json", "model.safetensors"]
    assert b'"ToyForSequenceClassification"' in files["config.json"]


def test_a_toy_next_event_model_trains_streams_and_generates(tmp_path):
    model = AutoModelForNextEventPrediction.from_config(ToyConfig(), seed=1)
    trainer = _trainer(model, tmp_path / "run", "next-event")
    try:
        trainer.train(resume=False)
        metrics = trainer.evaluate(prefix="eval").metrics
    finally:
        trainer.close()
    assert np.isfinite(metrics["eval_loss"]) and metrics["eval_predicted_events"] > 0
    model.save_pretrained(tmp_path / "saved")
    model = load_pretrained(tmp_path / "saved")
    assert type(model) is ToyForNextEventPrediction

    ids, ts = _random_events(1)
    full = model(ids, ts)
    pieces, state = [], init_stream(model, 2)
    for start in range(0, ids.shape[1], 4):
        out, state = stream(model, ids[:, start:start + 4], ts[:, start:start + 4], state)
        pieces.append(out)
    for field in ("logits", "gap_mixture_logits", "gap_log_means", "gap_log_scales"):
        got = np.concatenate([np.asarray(getattr(o, field)) for o in pieces], axis=1)
        np.testing.assert_allclose(got, np.asarray(getattr(full, field)), rtol=1e-5, atol=1e-5)

    g_ids, g_ts = generate(model, 12, temperature=1.0, seed=4)
    again = generate(model, 12, temperature=1.0, seed=4)
    assert len(g_ids) == 12 and np.all(np.diff(g_ts) >= 0) and np.all(g_ids < 10)  # no special tokens drawn
    np.testing.assert_array_equal(g_ids, again[0])
