"""The event-model contract (issue 11): one definition of every head constant used by the full forward,
both streaming steps and generation; model folders saved before the contract still load."""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import load_file

from eventlm import AutoModelForNextEventPrediction, AutoModelForSequenceClassification
from eventlm.models.eventssm import modeling_flax_eventssm as M
from eventlm.models.eventssm import streaming_eventssm as S
from eventlm.models.eventssm.configuration_eventssm import EventSSMConfig

TINY = dict(vocab_size=23, pad_token_id=20, bos_token_id=21, eos_token_id=22, hidden_size=8, state_size=8,
            num_ssm_blocks=2, num_stages=2, num_layers_per_stage=2, pooling_stride=3, dropout=0.0, num_labels=5,
            num_mixture_components=3)
LEGACY = Path(__file__).parent / "fixtures" / "legacy_v0_1"


def biased_next_event_model(log_scale_bias, log_mean_bias=3.9, seed=2, **overrides):
    """A next-event model whose gap head gives log-scales near `log_scale_bias` (one per component), far
    outside what a fresh model produces: as a model trained on streams with very regular or very irregular
    gaps does. The gap kernel is shrunk so the biases dominate; the rest of the model stays random."""
    model = M.FlaxEventSSMForNextEventPrediction(EventSSMConfig(**{**TINY, **overrides}), seed=seed)
    params = jax.tree_util.tree_map(lambda a: a, model.params)
    head = params["next_event_head"]["gap_params"]
    k = model.config.num_mixture_components
    bias = np.asarray(head["bias"]).copy()
    bias[k:2 * k] = log_mean_bias  # log(gap + 1 µs) ≈ 3.9 in ms: gaps around 50 ms
    bias[2 * k:] = np.asarray(log_scale_bias, np.float32)
    head["bias"] = jnp.asarray(bias)
    head["kernel"] = head["kernel"] * 0.01
    model.params = params
    return model


def _stream_all(model, ids, ts, implementation, chunk=7):
    state = S.init_stream(model, ids.shape[0])
    pieces = []
    for start in range(0, ids.shape[1], chunk):
        out, state = S.stream(model, ids[:, start:start + chunk], ts[:, start:start + chunk], state,
                              implementation=implementation)
        pieces.append(out)
    return {f: np.concatenate([np.asarray(getattr(o, f)) for o in pieces], axis=1)
            for f in ("logits", "gap_mixture_logits", "gap_log_means", "gap_log_scales")}


@pytest.mark.parametrize("implementation", ["xla", "cpu-kernel"])
def test_trained_gap_head_streams_with_parity(implementation):
    """Log-scales outside (−7, 7) (a biased head): both streaming steps give the full forward's numbers.
    Before the contract the streaming steps clipped to (−7, 7) and the forward to (−12, 5)."""
    model = biased_next_event_model([6.0, -9.0, 2.0])
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 20, (2, 40))
    ts = 1_000_000 + np.cumsum(rng.choice([0, 1, 37, 800, 2500, 40_000], size=(2, 40)), axis=1)
    full = model(ids, ts)
    scales = np.asarray(full.gap_log_scales)
    assert scales.min() < -7.5 and scales.max() > 4.5  # the head really is outside the old streaming range
    got = _stream_all(model, ids, ts, implementation)
    for field, value in got.items():
        ref = np.asarray(getattr(full, field), np.float64)
        err = np.max(np.abs(value - ref)) / max(np.max(np.abs(ref)), 1e-30)
        assert err <= 1e-5, f"{field}: relative error {err:.2e}"


def test_generate_samples_from_the_distribution_the_loss_scores():
    """Every generated event is the draw `sample_next_event` makes, with generate's key, from the full
    forward's prediction on the events before it: generation and the training loss see one distribution."""
    model = biased_next_event_model([-9.0, -9.5, -10.0])
    prompt_ids, prompt_ts = np.array([21, 3, 4, 5], np.int64), np.array([0, 10, 900, 2_000], np.int64)
    n, seed = 8, 5
    ids, ts = S.generate(model, n, temperature=1.0, seed=seed, prompt=(prompt_ids, prompt_ts))
    all_ids = np.concatenate([prompt_ids, ids])[None]
    all_ts = np.concatenate([prompt_ts, ts])[None]
    full = model(all_ids, all_ts)
    assert np.asarray(full.gap_log_scales).max() < -8.5  # inside the loss's range, outside the old (−7, 7)
    cfg = model.config
    banned = np.zeros(cfg.vocab_size, bool)
    banned[[cfg.pad_token_id, cfg.bos_token_id, cfg.eos_token_id]] = True
    previous = int(prompt_ts[-1])
    for i in range(n):
        k = len(prompt_ids) + i - 1  # the prediction after the event before generated event i
        fields = [np.asarray(getattr(full, f))[0, k] for f in
                  ("logits", "gap_mixture_logits", "gap_log_means", "gap_log_scales")]
        token, gap = S.sample_next_event(jax.random.fold_in(jax.random.PRNGKey(seed), i), *fields, 1.0,
                                         cfg.time_unit_us, banned)
        assert int(token) == int(ids[i])
        assert abs(int(gap) - (int(ts[i]) - previous)) <= 1, (i, int(gap), int(ts[i]) - previous)
        previous = int(ts[i])


def _legacy_expected():
    return load_file(str(LEGACY / "expected_outputs.safetensors"))


def test_model_folders_saved_before_the_contract_load_with_the_same_outputs():
    """Folders written by main before the contract (no `architectures` in config.json) load through the
    Auto classes and give the outputs stored beside them (trained-like, perturbed weights; batch norm)."""
    expected = _legacy_expected()
    inputs = (expected["input_ids"], expected["timestamps"], expected["attention_mask"])
    cls = AutoModelForSequenceClassification.from_pretrained(LEGACY / "classification")
    np.testing.assert_allclose(np.asarray(cls(*inputs).logits), expected["classification.logits"], rtol=1e-5,
                               atol=1e-6)
    ne = AutoModelForNextEventPrediction.from_pretrained(LEGACY / "next_event")
    out = ne(*inputs)
    for field in ("logits", "gap_mixture_logits", "gap_log_means", "gap_log_scales"):
        np.testing.assert_allclose(np.asarray(getattr(out, field)), expected[f"next_event.{field}"], rtol=1e-5,
                                   atol=1e-6)


def test_models_never_import_training_and_keep_no_module_level_state():
    """eventlm.models (every model, its streaming step, its converter) imports without eventlm.training; the
    streaming caches live on the model objects, not in modules."""
    import subprocess
    import sys

    code = ("import sys, eventlm.models.eventssm.modeling_flax_eventssm, eventlm.models.eventssm.streaming_eventssm, "
            "eventlm.models.eventssm.convert_original_eventssm_checkpoint, eventlm.streaming, eventlm.auto; "
            "print(sorted(m for m in sys.modules if m.startswith('eventlm.training')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
    model = biased_next_event_model([0.0, 0.0, 0.0], hidden_size=12)  # a config no other test streams
    def sizes():  # the length of every module-level dict / list / set of eventlm
        return {f"{name}.{key}": len(value) for name, m in list(sys.modules.items()) if name.startswith("eventlm.")
                for key, value in vars(m).items() if isinstance(value, (dict, list, set)) and not key.startswith("__")
                and key != "TRACE_COUNTS"}  # (a diagnostic counter of compilations, not a cache)

    before = sizes()
    S.generate(model, 3, seed=0)
    other = biased_next_event_model([0.5, 0.5, 0.5], seed=3, hidden_size=12)
    out_a, _ = S.stream(model, np.array([1, 2]), np.array([0, 5]), S.init_stream(model), implementation="xla")
    out_b, _ = S.stream(other, np.array([1, 2]), np.array([0, 5]), S.init_stream(other))
    assert not np.allclose(np.asarray(out_a.logits), np.asarray(out_b.logits))  # each model streams its own weights
    grown = [key for key, size in sizes().items() if key in before and size != before[key]]
    assert grown == []  # no module-level dict, list or set filled by streaming or generation
