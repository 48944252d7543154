"""EventSSM models: padding, time and causality invariants, jit/grad, learning, input checks, presets.

Tiny configs; every model and jitted step is built once per module (fixtures) so the file stays fast.
The layer/block numerics against float64 numpy live in test_ssm_numerics.py.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from eventlm.models.eventssm import modeling_flax_eventssm as modeling
from eventlm.models.eventssm.configuration_eventssm import EventSSMConfig
from eventlm.models.eventssm.modeling_flax_eventssm import (
    FlaxEventSSMForNextEventPrediction,
    FlaxEventSSMForSequenceClassification,
    FlaxEventSSMModel,
    compute_time_deltas,
)

VOCAB, PAD = 12, 9  # 9 channels, then pad / bos / eos
SMALL = dict(
    vocab_size=VOCAB, pad_token_id=PAD, bos_token_id=10, eos_token_id=11, hidden_size=8, state_size=8,
    num_ssm_blocks=2, num_stages=2, num_layers_per_stage=1, pooling_stride=3, pooling_mode="timepool",
    state_expansion_factor=2, hidden_expansion_factor=2, discretization="async", num_labels=3,
    num_mixture_components=2, dropout=0.1, classifier_pooling="timepool",
)  # fmt: skip


def close(a, b, rtol=1e-5, atol=1e-6):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=atol)


def random_batch(rng, lengths, length, max_gap=3000):
    """ids (B, L), int64 µs timestamps (B, L) with equal timestamps now and then, mask (B, L)."""
    batch = len(lengths)
    ids = rng.integers(0, PAD, (batch, length))
    gaps = rng.integers(0, max_gap, (batch, length)) * (rng.random((batch, length)) > 0.2)
    ts = 1_700_000_000_000_000 + np.cumsum(gaps, axis=1)  # epoch µs: beyond int32
    mask = (np.arange(length)[None] < np.asarray(lengths)[:, None]).astype(np.int32)
    ids = np.where(mask == 1, ids, PAD)
    return ids, ts.astype(np.int64), mask


def pad_to(arrays, length, rng):
    """Append padding with garbage ids and timestamps (must not matter)."""
    ids, ts, mask = arrays
    extra = length - ids.shape[1]
    junk = lambda a, hi: np.concatenate([a, rng.integers(-5, hi, (a.shape[0], extra))], axis=1)  # noqa: E731
    return junk(ids, 50), junk(ts, 10**6), np.concatenate([mask, np.zeros((mask.shape[0], extra), mask.dtype)], 1)


# ------------------------------------------------------------------------------------------------
# fixtures: one model per head, built once
# ------------------------------------------------------------------------------------------------


def random_params(model_class, config, seed):
    """A model holding random values for every variable (no init compiled: shapes from eval_shape)."""
    model = model_class(config, _do_init=False)
    shapes = jax.eval_shape(lambda key: model.init_weights(key, (1, 16)), jax.random.PRNGKey(0))
    rng = np.random.default_rng(seed)

    def value(path, leaf):
        name, shape = path[-1].key, leaf.shape
        draw = {
            "Lambda_re": lambda: -rng.uniform(0.1, 1.0, shape),
            "Lambda_im": lambda: rng.uniform(-3, 3, shape),
            "log_step": lambda: rng.uniform(np.log(0.01), np.log(0.5), shape),
            "kernel": lambda: rng.normal(0, 1 / np.sqrt(shape[0]), shape),
            "scale": lambda: rng.uniform(0.5, 1.5, shape),
            "var": lambda: rng.uniform(0.5, 2.0, shape),
            "embedding": lambda: rng.normal(0, 1, shape),
        }.get(name, lambda: rng.normal(0, 0.3, shape))
        return jnp.asarray(draw(), leaf.dtype)

    variables = jax.tree_util.tree_map_with_path(value, shapes)
    model.params = variables["params"]
    if "batch_stats" in variables:
        model.batch_stats = variables["batch_stats"]
    return model


@pytest.fixture(scope="module")
def classifier():
    return random_params(FlaxEventSSMForSequenceClassification, EventSSMConfig(**SMALL), seed=1)


@pytest.fixture(scope="module")
def batch():
    return random_batch(np.random.default_rng(0), lengths=(37, 20, 5), length=37)


@pytest.fixture(scope="module")
def classifier_logits(classifier, batch):
    return np.asarray(classifier(*batch).logits)


@pytest.fixture(scope="module")
def nep_strided():
    """Next-event model on a strided backbone (3 x 3 = 9 events per last-stage position)."""
    return random_params(FlaxEventSSMForNextEventPrediction, EventSSMConfig(**SMALL), seed=2)


# ------------------------------------------------------------------------------------------------
# padding, batching, time
# ------------------------------------------------------------------------------------------------


def test_extra_padding_changes_nothing(classifier, batch, classifier_logits):
    padded = pad_to(batch, 45, np.random.default_rng(1))
    close(classifier(*padded).logits, classifier_logits)


def test_batch_equals_per_sample_runs(classifier, batch, classifier_logits):
    ids, ts, mask = batch
    rng = np.random.default_rng(2)
    for i in range(3):
        alone = pad_to((ids[i : i + 1], ts[i : i + 1], mask[i : i + 1]), 40, rng)
        close(classifier(*alone).logits[0], classifier_logits[i])
    assert np.abs(classifier_logits[0] - classifier_logits[1]).max() > 1e-4  # samples do differ


def test_time_shift_changes_nothing_and_stretching_does(classifier, batch, classifier_logits):
    ids, ts, mask = batch
    shifted = ts + 123_456_789_012  # µs: int64 on the host, exact
    np.testing.assert_array_equal(np.asarray(classifier(ids, shifted, mask).logits), classifier_logits)
    stretched = ts[:, :1] + 3 * (ts - ts[:, :1])
    diff = np.abs(np.asarray(classifier(ids, stretched, mask).logits) - classifier_logits)
    assert diff[:2].max() > 1e-3, "the gaps must matter"


def test_zero_length_samples_give_finite_outputs(classifier, nep_strided, batch):
    ids, ts, mask = batch
    empty = mask.copy()
    empty[1] = 0
    out = classifier(ids, ts, empty, labels=np.array([0, 1, 2]), output_hidden_states=True)
    assert np.isfinite(np.asarray(out.logits)).all() and np.isfinite(float(out.loss))
    assert all(np.all(np.asarray(h)[1] == 0) for h in out.hidden_states)  # nothing leaks into sample 1
    ids, ts, _ = random_batch(np.random.default_rng(5), (30, 12), 30)
    out = nep_strided(ids, ts, np.zeros_like(ids), labels=ids)
    assert np.isfinite(np.asarray(out.logits)).all() and float(out.loss) == 0.0
    nothing = classifier(np.zeros((1, 0), np.int64), np.zeros((1, 0), np.int64)).logits  # length 0
    close(nothing[0], classifier.params["classifier"]["bias"])


def test_time_deltas_unit_and_gap_before():
    ts = np.array([[5_000, 5_000, 7_500, 0]])
    dt = compute_time_deltas(ts, np.array([[1, 1, 1, 0]]), time_unit_us=1000)
    np.testing.assert_array_equal(dt, np.float32([[0, 0, 2.5, 0]]))


# ------------------------------------------------------------------------------------------------
# causality of the next-event head
# ------------------------------------------------------------------------------------------------


def _nep_outputs(model, ids, ts):
    out = model(ids, ts)
    return [np.asarray(out[name]) for name in ("logits", "gap_mixture_logits", "gap_log_means", "gap_log_scales")]


@pytest.mark.parametrize("k", [0, 7, 8, 13, 26])
def test_next_event_head_is_causal(nep_strided, k):
    rng = np.random.default_rng(k)
    ids, ts, _ = random_batch(rng, (30,), 30)
    before = _nep_outputs(nep_strided, ids, ts)
    ids2, ts2 = ids.copy(), ts.copy()
    ids2[:, k + 1 :] = rng.integers(0, PAD, (1, 29 - k))
    ts2[:, k + 1 :] = ts[:, k : k + 1] + np.cumsum(rng.integers(0, 50_000, (1, 29 - k)), axis=1)
    after = _nep_outputs(nep_strided, ids2, ts2)
    for a, b in zip(before, after):
        close(a[:, : k + 1], b[:, : k + 1], rtol=0, atol=1e-6)
    assert np.abs(before[0][:, k + 1 :] - after[0][:, k + 1 :]).max() > 1e-4  # later ones do change


def test_next_event_loss_counts_predicted_events(nep_strided):
    ids, ts, mask = random_batch(np.random.default_rng(5), (30, 12), 30)
    out = nep_strided(ids, ts, mask, labels=ids)
    # by hand: token NLL of event k+1 from the logits at k, over the 29 + 11 predicted events
    logp = jax.nn.log_softmax(np.asarray(out.logits, np.float64), axis=-1)
    picks = [-logp[i, k, ids[i, k + 1]] for i, n in enumerate((30, 12)) for k in range(n - 1)]
    np.testing.assert_allclose(float(out.token_nll), np.mean(picks), rtol=1e-5)
    np.testing.assert_allclose(float(out.loss), float(out.token_nll) + float(out.time_nll), rtol=1e-6)


def test_lognormal_mixture_nll_is_the_integer_microsecond_gap_probability():
    from scipy.stats import norm

    res = 0.001  # 1 µs in ms
    gap = np.array([0, 1, 7, 1000, 123_456, 3_000_000]) * res
    logits, means, scales = np.array([0.3, -0.2]), np.array([-5.0, 0.5]), np.array([-1.0, 0.4])
    w = np.exp(logits) / np.exp(logits).sum()
    # the integer gap n µs: log(gap + 1 µs) falls in [log(n + 1), log(n + 2)) µs
    lo, hi = np.log(gap + res), np.log(gap + 2 * res)
    prob = sum(w[i] * (norm.cdf(hi, means[i], np.exp(scales[i])) - norm.cdf(lo, means[i], np.exp(scales[i]))) for i in range(2))
    nll = jax.jit(lambda g, m: modeling.lognormal_mixture_nll(g, logits, m, scales, res))
    got = nll(jnp.asarray(gap, jnp.float32), means)
    np.testing.assert_allclose(np.asarray(got), -np.log(prob), rtol=2e-4)
    # a proper distribution over n = 0, 1, 2, ...: the probabilities sum to (almost) 1
    total = np.exp(-np.asarray(nll(jnp.arange(0, 200_000, dtype=jnp.float32) * res, means))).sum()
    assert 0.99 < total <= 1.0 + 1e-4
    grads = jax.jit(jax.grad(lambda m: nll(jnp.asarray(gap, jnp.float32), m).sum()))(means)
    assert np.isfinite(np.asarray(grads)).all()


# ------------------------------------------------------------------------------------------------
# jit, grad and learning
# ------------------------------------------------------------------------------------------------


def _train(model, ids, ts, mask, labels, steps, lr=1e-2):
    """A user's loop: jitted value-and-grad over model(..., params=p, train=True, dropout_rng=k).loss."""
    opt = optax.adam(optax.cosine_decay_schedule(lr, steps))

    @jax.jit
    def step(params, opt_state, key):
        def loss_fn(p):
            return model(ids, ts, mask, labels=labels, params=p, train=True, dropout_rng=key).loss

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss, grads

    params, opt_state = model.params, opt.init(model.params)
    losses, key = [], jax.random.PRNGKey(0)
    for i in range(steps):
        params, opt_state, loss, grads = step(params, opt_state, jax.random.fold_in(key, i))
        losses.append(float(loss))
    return params, losses, grads


@pytest.fixture(scope="module")
def overfit_classifier():
    config = EventSSMConfig(**{**SMALL, "dropout": 0.0, "hidden_size": 16, "num_labels": 4})
    model = FlaxEventSSMForSequenceClassification(config, seed=3)
    ids, ts, mask = random_batch(np.random.default_rng(6), (24, 20, 17, 24, 9, 14), 24)
    labels = np.array([0, 1, 2, 3, 1, 2])
    params, losses, grads = _train(model, ids, ts, mask, labels, steps=200)
    return model, params, losses, grads, (ids, ts, mask, labels)


def test_jitted_value_and_grad_with_explicit_params(overfit_classifier):
    model, params, losses, grads, (ids, ts, mask, labels) = overfit_classifier
    assert jax.tree_util.tree_structure(grads) == jax.tree_util.tree_structure(model.params)
    ssm = grads["eventssm"]["stage0_block0"]["ssm"]
    for name in ("Lambda_re", "Lambda_im", "B", "C", "D", "log_step"):
        assert np.isfinite(ssm[name]).all() and np.abs(ssm[name]).max() > 0, name
    assert np.abs(grads["eventssm"]["embed"]["embedding"][PAD]).max() == 0  # the pad row is never read


def test_tiny_classifier_overfits(overfit_classifier):
    model, params, losses, _, (ids, ts, mask, labels) = overfit_classifier
    assert losses[-1] <= 0.1 * losses[0], f"loss {losses[0]:.3f} -> {losses[-1]:.3f}"
    preds = np.asarray(model(ids, ts, mask, params=params).logits).argmax(-1)
    np.testing.assert_array_equal(preds, labels)


def test_classification_loss_int_and_soft_labels():
    logits = jnp.asarray(np.random.default_rng(3).normal(size=(4, 3)), jnp.float32)
    labels = np.array([2, 0, 1, 1])
    want = -np.mean(jax.nn.log_softmax(np.asarray(logits, np.float64))[np.arange(4), labels])
    np.testing.assert_allclose(float(modeling.classification_loss(logits, labels)), want, rtol=1e-6)
    soft = np.eye(3, dtype=np.float32)[labels]
    np.testing.assert_allclose(float(modeling.classification_loss(logits, soft)), want, rtol=1e-6)
    mixed = 0.7 * soft + 0.3 * np.eye(3, dtype=np.float32)[[0, 1, 2, 0]]  # cut-mix style targets
    want_mixed = -np.mean(np.sum(mixed * jax.nn.log_softmax(np.asarray(logits, np.float64)), axis=1))
    np.testing.assert_allclose(float(modeling.classification_loss(logits, mixed)), want_mixed, rtol=1e-6)


def test_tiny_next_event_model_overfits():
    over = dict(dropout=0.0, hidden_size=16, state_size=16, pooling_stride=1, num_stages=1, num_layers_per_stage=2)
    model = FlaxEventSSMForNextEventPrediction(EventSSMConfig(**{**SMALL, **over}), seed=4)
    rng = np.random.default_rng(7)
    ids = rng.integers(0, PAD, (4, 16))
    ts = np.cumsum(rng.choice([0, 1, 3], (4, 16)), axis=1)  # µs gaps to memorise (bursts of events)
    mask = np.ones_like(ids)
    _, losses, _ = _train(model, ids, ts, mask, ids, steps=300, lr=1e-2)
    assert losses[-1] <= 0.1 * losses[0], f"loss {losses[0]:.3f} -> {losses[-1]:.3f}"


def test_train_without_dropout_rng_is_refused(classifier, batch):
    with pytest.raises(ValueError, match="dropout_rng"):
        classifier(*batch, train=True)


# ------------------------------------------------------------------------------------------------
# batch norm, token tables, reference conventions
# ------------------------------------------------------------------------------------------------


def test_batch_norm_uses_valid_events_only_and_updates_statistics():
    config = EventSSMConfig(**{**SMALL, "norm": "batch", "dropout": 0.0, "num_stages": 1})
    model = random_params(FlaxEventSSMForSequenceClassification, config, seed=5)
    arrays = random_batch(np.random.default_rng(8), (20, 11), 20)
    out = model(*arrays, train=True)
    padded = model(*pad_to(arrays, 29, np.random.default_rng(9)), train=True)
    close(padded.logits, out.logits)
    new, old = out.batch_stats["eventssm"]["stage0_block0"]["norm"], model.batch_stats["eventssm"]["stage0_block0"]["norm"]
    close(padded.batch_stats["eventssm"]["stage0_block0"]["norm"]["mean"], new["mean"])
    assert np.abs(np.asarray(new["mean"]) - np.asarray(old["mean"])).max() > 1e-4
    # batch norm statistics of the first block = those of the embedded valid events
    emb = np.asarray(model.params["eventssm"]["embed"]["embedding"])[arrays[0][arrays[2] == 1]]
    m = config.batchnorm_momentum
    close(new["mean"], m * np.asarray(old["mean"]) + (1 - m) * emb.mean(0), rtol=1e-4)
    close(new["var"], m * np.asarray(old["var"]) + (1 - m) * emb.var(0), rtol=1e-4)


@pytest.mark.parametrize("norm, stride", [("batch", 3), ("layer", 1)])
def test_token_table_path_equals_event_path(norm, stride):
    """The first block's per-token tables (norm(E), B̃·norm(E)) give what per-event projection gives."""
    config = EventSSMConfig(**{**SMALL, "norm": norm, "dropout": 0.0, "num_stages": 1, "pooling_stride": stride})
    ids, ts, mask = random_batch(np.random.default_rng(10), (13, 4), 13)
    dt = compute_time_deltas(ts, mask, config.time_unit_us)
    variables = {k: v["eventssm"] for k, v in random_params(FlaxEventSSMModel, config, seed=6).variables.items()}
    outs = []
    for table in (False, True):
        backbone = modeling.FlaxEventSSMBackbone(config, token_table=table)
        outs.append(jax.jit(lambda v: backbone.apply(v, ids, dt, mask, train=True, mutable=["batch_stats"]))(variables))
    close(outs[1][0].last_hidden_state, outs[0][0].last_hidden_state)
    if norm == "batch":  # batch statistics from token counts = those over the valid events
        stats = [out[1]["batch_stats"]["stage0_block0"]["norm"] for out in outs]
        close(stats[1]["mean"], stats[0]["mean"])
        close(stats[1]["var"], stats[0]["var"])


def test_reference_gap_after_convention_shifts_gaps_and_drops_the_last_event():
    """gap_convention="after": event k carries t_{k+1} - t_k and the last event only marks the end."""
    base = {**SMALL, "dropout": 0.0, "num_stages": 1, "pooling_keep": "first", "readout_convention": "reference"}
    after, before = EventSSMConfig(**base, gap_convention="after"), EventSSMConfig(**base)
    ids, ts, mask = random_batch(np.random.default_rng(11), (17, 7), 17)
    dt = compute_time_deltas(ts, mask, 1000.0)
    variables = {"params": random_params(FlaxEventSSMModel, after, seed=7).params["eventssm"]}
    got = jax.jit(modeling.FlaxEventSSMBackbone(after).apply)(variables, ids, dt, mask)
    shifted_dt = np.concatenate([dt[:, 1:], np.zeros_like(dt[:, :1])], axis=1)
    shorter = np.concatenate([mask[:, 1:], np.zeros_like(mask[:, :1])], axis=1)
    want = jax.jit(modeling.FlaxEventSSMBackbone(before).apply)(variables, ids, shifted_dt, shorter)
    close(got.last_hidden_state, want.last_hidden_state)
    # reference readout: only complete windows count (floor((n - 1) / 3) of them)
    np.testing.assert_array_equal(np.asarray(got.pooled_mask).sum(1), [16 // 3, 6 // 3])
    want_total = [(ts[0, 16] - ts[0, 0]) / 1000, (ts[1, 6] - ts[1, 0]) / 1000]
    np.testing.assert_allclose(np.asarray(got.total_time), want_total, rtol=1e-6)


def test_next_event_refuses_the_gap_after_convention():
    with pytest.raises(ValueError, match="gap_convention"):
        FlaxEventSSMForNextEventPrediction(EventSSMConfig(**SMALL, gap_convention="after"))


# ------------------------------------------------------------------------------------------------
# bad input
# ------------------------------------------------------------------------------------------------


def _bad_inputs(batch):
    ids, ts, mask = batch
    out_of_vocab = ids.copy()
    out_of_vocab[1, 3] = VOCAB
    decreasing = ts.copy()
    decreasing[0, 10] = decreasing[0, 9] - 1
    nan_ts = ts.astype(np.float64)
    nan_ts[2, 1] = np.nan
    nan_ids = ids.astype(np.float64)
    nan_ids[0, 0] = np.nan
    holey = mask.copy()
    holey[1, 2] = 0
    return [
        (dict(input_ids=out_of_vocab), "input_ids.*12"),
        (dict(input_ids=-ids - 1), "input_ids.*-"),
        (dict(timestamps=decreasing), "timestamps decrease"),
        (dict(timestamps=nan_ts), "timestamps.*nan"),
        (dict(input_ids=nan_ids), "input_ids.*NaN"),
        (dict(timestamps=ts[:, :-1]), "timestamps has shape"),
        (dict(attention_mask=mask[:2]), "attention_mask has shape"),
        (dict(attention_mask=holey), "attention_mask"),
        (dict(input_ids=ids[0]), "input_ids must have shape"),
    ]


@pytest.mark.parametrize("case", range(9))
def test_bad_input_raises_value_error_naming_it(classifier, batch, case):
    kwargs, message = _bad_inputs(batch)[case]
    ids, ts, mask = batch
    args = dict(input_ids=ids, timestamps=ts, attention_mask=mask) | kwargs
    with pytest.raises(ValueError, match=message):
        classifier(**args)


def test_bad_labels_raise(classifier, batch):
    with pytest.raises(ValueError, match="labels\\[2\\] = 3"):
        classifier(*batch, labels=np.array([0, 1, 3]))
    with pytest.raises(ValueError, match="soft labels"):
        classifier(*batch, labels=np.ones((3, 5), np.float32))


def test_equal_timestamps_and_padding_garbage_are_legal(classifier, batch):
    ids, ts, mask = batch
    equal = np.repeat(ts[:, :1], ts.shape[1], axis=1)
    garbage = np.where(mask == 1, ids, -7)
    assert np.isfinite(np.asarray(classifier(garbage, equal, mask).logits)).all()


def test_checks_skip_tracers_and_jit_works(classifier, batch, classifier_logits):
    ids, ts, mask = batch
    rel = (ts - ts[:, :1]).astype(np.int32)  # inside jit: int32 timestamps, gaps taken in the trace
    logits = jax.jit(lambda p, i, t, m: classifier(i, t, m, params=p).logits)(classifier.params, ids, rel, mask)
    close(logits, classifier_logits)


# ------------------------------------------------------------------------------------------------
# outputs, presets, config
# ------------------------------------------------------------------------------------------------


def test_outputs_behave_like_transformers(classifier, batch):
    ids, ts, mask = batch
    out = classifier(ids, ts, mask, labels=np.array([0, 1, 2]), output_hidden_states=True)
    assert out.keys() == ["loss", "logits", "hidden_states"] and out["logits"] is out.logits
    assert len(out.hidden_states) == 1 + 2 * 1
    assert classifier(ids, ts, mask, return_dict=False)[0].shape == (3, 3)
    base = FlaxEventSSMModel(classifier.config, _do_init=False)
    hidden = base(ids, ts, mask, params={"eventssm": classifier.params["eventssm"]})
    assert hidden.last_hidden_state.shape == (3, math.ceil(37 / 9), 16)
    np.testing.assert_array_equal(np.asarray(hidden.pooled_mask).sum(1), [5, 3, 1])


PAPER = {"shd": (0.42e6, None), "ssc": (0.60e6, None), "dvs-gesture": (5.4e6, 4.2e6)}


@pytest.mark.parametrize("name", sorted(PAPER))
def test_preset_parameter_counts_match_the_paper(name):
    config = EventSSMConfig.from_preset(name)
    model = FlaxEventSSMForSequenceClassification(config, _do_init=False)
    shapes = jax.eval_shape(lambda key: model.init_weights(key, (1, 16)), jax.random.PRNGKey(0))  # nothing computed
    total = sum(math.prod(s.shape) for s in jax.tree_util.tree_leaves(shapes["params"]))
    embed = math.prod(shapes["params"]["eventssm"]["embed"]["embedding"].shape)
    want, want_embed = PAPER[name]
    assert abs(total - want) / want < 0.015, total
    if want_embed:
        assert abs(embed - want_embed) / want_embed < 0.015, embed
    assert ("batch_stats" in shapes) == (config.norm == "batch")
    leaves = {path[-1].key for path, _ in jax.tree_util.tree_leaves_with_path(shapes["params"])}
    assert {"Lambda_re", "Lambda_im", "B", "C", "D", "log_step", "embedding"} <= leaves


def test_config_presets_and_errors():
    config = EventSSMConfig.from_preset("dvs-gesture", num_labels=5)
    assert (config.vocab_size, config.pooling_stride, config.state_expansion_factor, config.num_labels) == (32771, 16, 2, 5)
    assert EventSSMConfig.from_dict(config.to_dict()).to_dict() == config.to_dict()
    assert (config.gap_convention, config.pooling_keep) == ("before", "last")
    with pytest.raises(ValueError, match="preset"):
        EventSSMConfig.from_preset("nope")
    with pytest.raises(ValueError, match="pooling_mode"):
        EventSSMConfig(pooling_mode="max")
    with pytest.raises(ValueError, match="num_ssm_blocks"):
        EventSSMConfig(state_size=12, num_ssm_blocks=8)


def test_benchmark_script_runs_small(capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "benchmark_model.py"
    spec = importlib.util.spec_from_file_location("benchmark_model", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    rows = script.main(["--presets", "tiny", "--lengths", "64", "--batch", "2", "--repeats", "1",
                        "--modes", "forward", "--in-process"])  # fmt: skip
    assert len(rows) == 1 and rows[0]["forward_s"] > 0 and rows[0]["params"] > 0
    table = capsys.readouterr().out
    assert "| tiny | 2 x 64 |" in table and "cpu" in table
