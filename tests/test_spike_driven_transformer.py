"""Spike-Driven Transformer (issue 12): the Flax model against an independent numpy forward written from the
reference's modules (NCHW as PyTorch, loops over T as SpikingJelly), on trained-like random weights with
batch-norm statistics that are not the identity; config and tokenizer checks; Auto classes; training."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from eventlm import AutoModelForSequenceClassification
from eventlm.auto import load_pretrained
from eventlm.models.spike_driven_transformer.configuration_spike_driven_transformer import \
    SpikeDrivenTransformerConfig
from eventlm.models.spike_driven_transformer.modeling_flax_spike_driven_transformer import \
    FlaxSpikeDrivenTransformerForSequenceClassification

from test_spiking import lif_numpy, spikingjelly_frames

SENSOR = (12, 10, 2)


def tiny_config(**overrides):
    fields = dict(num_frames=4, hidden_size=16, num_heads=2, num_layers=2, mlp_ratio=2, pooling_stat="0101",
                  num_labels=3)
    return SpikeDrivenTransformerConfig.for_sensor(SENSOR, **{**fields, **overrides})


def trained_like(model, seed=0):
    """Weights a trained model could have: convs at a scale where every LIF layer fires sometimes, batch-norm
    scales, biases and running statistics far from their init."""
    rng = np.random.default_rng(seed)

    def leaf(path, a):
        name = path[-1].key
        if name == "kernel":
            fan_in = int(np.prod(a.shape[:-1]))
            return jnp.asarray(rng.normal(0, 2.5 / np.sqrt(fan_in), a.shape), jnp.float32)
        if name == "scale":
            return jnp.asarray(rng.uniform(0.6, 1.6, a.shape), jnp.float32)
        if name == "w":  # PLIF
            return jnp.asarray(rng.normal(0, 0.5, a.shape), jnp.float32)
        return jnp.asarray(rng.normal(0.3, 0.4, a.shape), jnp.float32)  # biases

    model.params = jax.tree_util.tree_map_with_path(leaf, model.params)
    model.batch_stats = jax.tree_util.tree_map_with_path(
        lambda p, a: jnp.asarray(rng.normal(0, 0.3, a.shape) if p[-1].key == "mean" else rng.uniform(0.5, 2, a.shape),
                                 jnp.float32), model.batch_stats)
    return model


# ---------------------------------------------------------------------------------- numpy reference (NCHW)


def conv_np(x, kernel, bias=None):
    """Conv2d, stride 1, 'same' padding; x (N, C, H, W), kernel in flax layout (k, k, C_in, C_out)."""
    k = kernel.shape[0]
    pad = k // 2
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    n, c, h, w = x.shape
    out = np.zeros((n, kernel.shape[3], h, w), np.float64)
    for i in range(k):
        for j in range(k):
            out += np.einsum("nchw,co->nohw", xp[:, :, i:i + h, j:j + w], kernel[i, j].astype(np.float64))
    return out if bias is None else out + bias[None, :, None, None]


def bn_np(x, p, s, eps=1e-5):
    return (x - s["mean"][None, :, None, None]) / np.sqrt(s["var"][None, :, None, None] + eps) \
        * p["scale"][None, :, None, None] + p["bias"][None, :, None, None]


def maxpool_np(x, k, stride):
    """MaxPool2d(k, stride, padding k // 2) over the last two axes (−inf padding)."""
    pad = k // 2
    xp = np.pad(x, [(0, 0)] * (x.ndim - 2) + [(pad, pad), (pad, pad)], constant_values=-np.inf)
    h = (x.shape[-2] + 2 * pad - k) // stride + 1
    w = (x.shape[-1] + 2 * pad - k) // stride + 1
    out = np.full(x.shape[:-2] + (h, w), -np.inf)
    for i in range(k):
        for j in range(k):
            out = np.maximum(out, xp[..., i:i + stride * h:stride, j:j + stride * w:stride])
    return out


def lif(x, threshold=1.0):  # x (T, ...): SpikingJelly's step loop
    return lif_numpy(x.astype(np.float32), v_th=threshold)[0].astype(np.float64)


def bilinear_np(x, size):
    """torch's interpolate(mode="bilinear", align_corners=False, antialias=False) over the last two axes,
    written out: output i reads input (i + ½)·(in/out) − ½, linearly between its two neighbours."""
    for axis, out in ((-1, size[0]), (-2, size[1])):
        n = x.shape[axis]
        src = np.maximum((np.arange(out) + 0.5) * (n / out) - 0.5, 0.0)
        lo = np.floor(src).astype(int)
        hi = np.minimum(lo + 1, n - 1)
        w = (src - lo).reshape((-1,) + (1,) * (-axis - 1))
        x = np.take(x, lo, axis=axis) * (1 - w) + np.take(x, hi, axis=axis) * w
    return x


def reference_forward(model, frames, used=None):
    """The reference's SpikeDrivenTransformer.forward (MS_SPS, MS_Block_Conv ×L, head) in numpy: frames
    (T, B, P, H, W) → logits (B, classes); eventlm's options written beside it (resize, channel frames,
    attention over the frames, the head's mean over the used frames (T, B) only)."""
    cfg = model.config
    P = jax.tree_util.tree_map(np.asarray, model.params)["sdt"]
    S = jax.tree_util.tree_map(np.asarray, model.batch_stats)["sdt"]
    T, B = frames.shape[:2]

    def cbn(x, p, s, bias=False):  # (T, B, C, H, W) → conv → BN, through flatten(0, 1) as the reference
        y = conv_np(x.reshape((T * B,) + x.shape[2:]), p["conv"]["kernel"], p["conv"].get("bias") if bias else None)
        y = bn_np(y, p["bn"], s["bn"])
        return y.reshape((T, B) + y.shape[1:])

    def pool(x, k, stride):
        return maxpool_np(x, k, stride)

    sps, sps_s = P["patch_embed"], S["patch_embed"]
    used = np.ones((T, B), bool) if used is None else used
    x = frames.astype(np.float64)
    if cfg.frame_size is not None:
        x = bilinear_np(x, cfg.frame_size)
    if cfg.frame_layout == "channels":  # every sensor channel an input feature of a 1×1 frame
        x = x.reshape(T, B, -1, 1, 1)
    for i in range(3):
        x = lif(cbn(x, sps[f"proj{i}"], sps_s[f"proj{i}"]))
        if cfg.pooling_stat[i] == "1":
            x = pool(x, 3, 2)
    feat = cbn(x, sps["proj3"], sps_s["proj3"])
    if cfg.pooling_stat[3] == "1":
        feat = pool(feat, 3, 2)
    x = cbn(lif(feat), sps["rpe"], sps_s["rpe"]) + feat
    heads = cfg.num_heads
    for layer in range(cfg.num_layers):
        a, a_s = P[f"block{layer}_attn"], S[f"block{layer}_attn"]
        _, _, C, H, W = x.shape
        N = H * W
        identity = x
        s = lif(x)
        q = lif(cbn(s, a["q"], a_s["q"]))
        k = lif(cbn(s, a["k"], a_s["k"]))
        v = lif(cbn(s, a["v"], a_s["v"]))
        if cfg.dvs_mode:
            k, v = pool(k, 3, 1), pool(v, 3, 1)
        split = lambda z: z.reshape(T, B, C, N).transpose(0, 1, 3, 2).reshape(T, B, N, heads, C // heads) \
            .transpose(0, 1, 3, 2, 4)  # noqa: E731
        q, k, v = split(q), split(k), split(v)
        kv = k * v
        if cfg.dvs_mode:
            kv = pool(kv, 3, 1)
        kv = kv.sum(axis=-2, keepdims=True)
        if cfg.attention_over == "time":  # Σ over frames t' ≤ t (causal) or all frames
            kv = np.cumsum(kv, axis=0) if cfg.causal_attention else np.broadcast_to(kv.sum(axis=0), kv.shape)
        kv = lif(kv, threshold=0.5)
        y = q * kv
        if cfg.dvs_mode:
            y = pool(y, 3, 1)
        y = y.transpose(0, 1, 2, 4, 3).reshape(T, B, C, H, W)
        x = cbn(y, a["proj"], a_s["proj"], bias=True) + identity
        m, m_s = P[f"block{layer}_mlp"], S[f"block{layer}_mlp"]
        identity = x
        y = cbn(lif(x), m["fc1"], m_s["fc1"], bias=True)
        if cfg.mlp_ratio == 1:
            y = identity = identity + y
        x = cbn(lif(y), m["fc2"], m_s["fc2"], bias=True) + identity
    spikes = lif(x.reshape(T, B, cfg.hidden_size, -1).mean(axis=3))  # (T, B, D)
    head = P["classifier"] if "classifier" in P else jax.tree_util.tree_map(np.asarray, model.params)["classifier"]
    per_frame = spikes @ head["kernel"] + head["bias"]
    w = used[..., None].astype(np.float64)
    return (per_frame * w).sum(axis=0) / np.maximum(w.sum(axis=0), 1), spikes


def random_tokens(seed, batch=3, length=400):
    """Token ids on SENSOR with bos/eos and padding, and int µs timestamps."""
    rng = np.random.default_rng(seed)
    W, H, Pol = SENSOR
    channels = W * H * Pol
    ids = np.full((batch, length), channels, np.int64)
    ts = np.zeros((batch, length), np.int64)
    mask = np.zeros((batch, length), np.int32)
    for b in range(batch):
        n = int(rng.integers(length // 3, length - 2))
        x, y, p = rng.integers(0, W, n), rng.integers(0, H, n), rng.integers(0, 2, n)
        x[: n // 2] = np.minimum(x[: n // 2], W // 2)  # spatial structure the convs can see
        t = np.sort(rng.integers(0, 200_000, n))
        ids[b, 0], ids[b, 1:n + 1], ids[b, n + 1] = channels + 1, p * W * H + y * W + x, channels + 2
        ts[b, 1:n + 1], ts[b, n + 1:] = t, t[-1]
        ts[b, 0] = t[0]
        mask[b, :n + 2] = 1
    return ids, ts, mask


def decoded_events(ids, ts, mask):
    """(x, y, p, t) of each sample of random_tokens (bos, events, eos, padding), decoded from the tokens."""
    W, H, _ = SENSOR
    for b in range(ids.shape[0]):
        n = int(mask[b].sum()) - 2
        tok, t = ids[b, 1:n + 1], ts[b, 1:n + 1]
        p, rest = tok // (W * H), tok % (W * H)
        yield rest % W, rest // W, p, t


def reference_frames(ids, ts, mask, T, split_by, frame_length=0):
    """(T, B, 2, H, W) frames and the used frames (T, B): SpikingJelly's for "number" / "time"; for
    "events" / "duration" event k (time t) in frame k // frame_events ((t − t_0) // frame_us), written
    out as loops."""
    W, H, _ = SENSOR
    if split_by in ("number", "time"):
        frames = [spikingjelly_frames(x, y, p, t, W, H, T, split_by) for x, y, p, t in decoded_events(ids, ts, mask)]
        return np.stack(frames, axis=1), None
    frames, used = np.zeros((T, ids.shape[0], 2, H, W)), np.zeros((T, ids.shape[0]), bool)
    for b, (x, y, p, t) in enumerate(decoded_events(ids, ts, mask)):
        for k in range(t.size):
            f = k // frame_length if split_by == "events" else (t[k] - t[0]) // frame_length
            frames[f, b, p[k], y[k], x[k]] += 1
            used[: f + 1, b] = True
    return frames, used


@pytest.mark.parametrize("overrides", [
    dict(), dict(dvs_mode=True, pooling_stat="1100"), dict(mlp_ratio=1), dict(spike_mode="plif", split_by="time"),
    dict(frame_size=[6, 5], dvs_mode=True, pooling_stat="0011", classification_loss="tet"),
    dict(split_by="events", frame_events=45, num_frames=10), dict(split_by="duration", frame_us=25_000, num_frames=9),
    dict(frame_layout="channels", stem_kernel_size=1, pooling_stat="0000", attention_over="time",
         causal_attention=True, split_by="duration", frame_us=20_000, num_frames=11),
    dict(frame_layout="channels", stem_kernel_size=1, pooling_stat="0000", attention_over="time"),
], ids=["gesture-like", "dvs-mode", "mlp-residual", "plif-time", "cifar10-dvs-like", "by-events", "by-duration",
        "audio-causal", "audio-over-all-frames"])
def test_forward_equals_the_reference_in_numpy(overrides):
    cfg = tiny_config(**overrides)
    model = trained_like(FlaxSpikeDrivenTransformerForSequenceClassification(cfg, seed=1))
    if cfg.spike_mode == "plif":  # the numpy reference runs τ = 2 neurons: a PLIF at its init is one
        model.params = jax.tree_util.tree_map_with_path(
            lambda p, a: jnp.zeros_like(a) if p[-1].key == "w" else a, model.params)
    ids, ts, mask = random_tokens(seed=len(overrides))
    frames, used = reference_frames(ids, ts, mask, cfg.num_frames, cfg.split_by, cfg.frame_length)
    ref_logits, ref_spikes = reference_forward(model, frames, used)
    out = model(ids, ts, attention_mask=mask, output_hidden_states=True)
    network_input = bilinear_np(frames, cfg.frame_size) if cfg.frame_size else frames
    if cfg.frame_layout == "channels":
        network_input = network_input.reshape(frames.shape[:2] + (-1,))
    np.testing.assert_allclose(np.asarray(out.hidden_states[0]).transpose(0, 1, 4, 2, 3).reshape(network_input.shape),
                               network_input, rtol=1e-6)
    rate = ref_spikes.mean()
    assert 0.02 < rate < 0.98, f"head firing rate {rate}: the weights do not exercise the spikes"
    np.testing.assert_allclose(np.asarray(out.logits), ref_logits, rtol=1e-4, atol=1e-4 * np.abs(ref_logits).max())


def test_config_checks_and_presets():
    cfg = SpikeDrivenTransformerConfig.from_preset("dvs-gesture")
    assert (cfg.vocab_size, cfg.num_frames, cfg.hidden_size, cfg.num_layers, cfg.pooling_stat, cfg.dvs_mode) == \
        (128 * 128 * 2 + 3, 16, 256, 2, "0111", False)
    with pytest.raises(ValueError, match="vocab_size must be the sensor's 240 channels"):
        SpikeDrivenTransformerConfig(sensor_size=SENSOR, vocab_size=100, pad_token_id=5, bos_token_id=6, eos_token_id=7)
    with pytest.raises(ValueError, match="pooling_stat"):
        tiny_config(pooling_stat="01")
    with pytest.raises(ValueError, match="hidden_size"):
        tiny_config(hidden_size=20)
    with pytest.raises(ValueError, match="split_by"):
        tiny_config(split_by="frames")


def test_auto_classes_save_load_and_a_training_step(tmp_path):
    cfg = tiny_config()
    model = trained_like(AutoModelForSequenceClassification.from_config(cfg, seed=0))
    assert type(model) is FlaxSpikeDrivenTransformerForSequenceClassification
    ids, ts, mask = random_tokens(seed=5)
    model.save_pretrained(tmp_path / "sdt")
    loaded = load_pretrained(tmp_path / "sdt")
    assert type(loaded) is FlaxSpikeDrivenTransformerForSequenceClassification
    np.testing.assert_array_equal(np.asarray(loaded(ids, ts, mask).logits), np.asarray(model(ids, ts, mask).logits))

    labels = np.array([0, 1, 2])

    def loss(params):
        out = model(ids, ts, mask, labels=labels, params=params, batch_stats=model.batch_stats, train=True)
        return out.loss

    grads = jax.grad(loss)(model.params)
    norms = {k: float(optax_norm(v)) for k, v in grads["sdt"].items()}
    assert all(np.isfinite(list(norms.values()))) and all(n > 0 for n in norms.values()), norms  # surrogate grads


def optax_norm(tree):
    return jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree_util.tree_leaves(tree)))


def test_energy_report_counts_macs_and_spike_operations(tmp_path, capsys):
    """MACs by hand for the first conv (real-valued frames) and a spiking 1×1 conv; SOPs = input firing rate ×
    MACs with the rate read off the numpy reference; E = 4.6 pJ·MAC + 0.9 pJ·SOP; EventSSM goes through the
    same function; `eventlm energy` prints the table and writes it into the model card."""
    from eventlm.energy import energy_report

    cfg = tiny_config()
    model = trained_like(FlaxSpikeDrivenTransformerForSequenceClassification(cfg, seed=1))
    ids, ts, mask = random_tokens(seed=1)
    report = energy_report(model, ids, ts, mask)
    layers = {layer.name: layer for layer in report.layers}
    T, (W, H, P), D = cfg.num_frames, SENSOR, cfg.hidden_size
    first = layers["sdt/patch_embed/proj0/conv"]
    assert not first.spiking_input and first.macs == T * H * W * (D // 8) * 9 * P
    q = layers["sdt/block0_attn/q/conv"]  # 1×1 conv D → D on the stem's H/4 × W/4 tokens (pooling "0101")
    assert q.spiking_input and q.macs == T * (H // 4 + 1) * (W // 4) * D * D
    frames, _ = reference_frames(ids, ts, mask, T, cfg.split_by)
    assert 0.0 < q.firing_rate < 1.0 and q.sops == pytest.approx(q.firing_rate * q.macs)
    assert report.energy_pj == pytest.approx(sum(4.6 * layer.macs if not layer.spiking_input else 0.9 * layer.sops
                                                 for layer in report.layers))
    assert frames.shape[0] == T

    # spike-driven attention's column sum: one addition per spike of K⊙V, counted from the K and V LIF outputs
    spikes = {}

    def grab(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        if context.method_name == "__call__" and context.module.path[-2:] in (("block0_attn", "k_lif"),
                                                                                ("block0_attn", "v_lif")):
            spikes[context.module.path[-1]] = out
        return out

    from eventlm.modeling_events import prepare_inputs

    with nn.intercept_methods(grab):
        model.module.apply(model._variables_for(None, None), *prepare_inputs(cfg, ids, ts, mask))
    added = layers["sdt/block0_attn/token_sum"]
    assert added.spiking_input and added.macs == T * (H // 4 + 1) * (W // 4) * D  # every K⊙V element
    coincident = float(np.sum(np.asarray(spikes["k_lif"]) * np.asarray(spikes["v_lif"]))) / ids.shape[0]
    assert coincident > 0 and added.sops == pytest.approx(coincident, rel=1e-5)

    from eventlm.models.eventssm.configuration_eventssm import EventSSMConfig
    from eventlm.models.eventssm.modeling_flax_eventssm import FlaxEventSSMForSequenceClassification

    ssm = FlaxEventSSMForSequenceClassification(EventSSMConfig.from_preset("tiny", vocab_size=243, pad_token_id=240,
                                                                           bos_token_id=241, eos_token_id=242))
    ssm_report = energy_report(ssm, ids, ts, mask)
    assert ssm_report.layers and all(not layer.spiking_input for layer in ssm_report.layers)  # real-valued: MACs

    import datasets

    from eventlm import cli
    from eventlm.tokenization_events import EventTokenizer

    model.save_pretrained(tmp_path / "model")
    EventTokenizer(sensor_size=SENSOR).save_pretrained(tmp_path / "model")
    rng = np.random.default_rng(0)
    rows = [{"t": np.sort(rng.integers(0, 90_000, 60)).astype(np.int64), "x": rng.integers(0, W, 60).astype(np.int16),
             "y": rng.integers(0, H, 60).astype(np.int16), "p": rng.integers(0, 2, 60).astype(np.int8), "label": 1}
            for _ in range(5)]
    datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)}).save_to_disk(str(tmp_path / "data"))
    assert cli.main(["energy", str(tmp_path / "model"), str(tmp_path / "data"), "--batch-size", "2"]) == 0
    assert "| **total** (per sample, 5 samples" in capsys.readouterr().out
    card = (tmp_path / "model" / "README.md").read_text()
    assert card.count("## Theoretical energy") == 1 and "sdt/patch_embed/proj0/conv" in card


def test_frames_left_empty_are_refused_with_the_sample_named():
    model = FlaxSpikeDrivenTransformerForSequenceClassification(tiny_config(split_by="time"), seed=0)
    ids, ts, mask = random_tokens(seed=3)
    ts[1, 2:] = np.maximum(ts[1, 2:], 150_000)  # sample 1: one event, silence until 150 ms: empty frames by time
    ts[1, :2] = 0
    with pytest.raises(ValueError, match=r"sample 1 has \d+ events, which leave some of its num_frames=4 frames "
                                         r"\(split_by='time'\) without events"):
        model(ids, ts, mask)
    few = FlaxSpikeDrivenTransformerForSequenceClassification(tiny_config(num_frames=50), seed=0)
    short = np.array([[1, 2, 3] + [240] * 5]), np.arange(8)[None] * 10, np.array([[1, 1, 1] + [0] * 5])
    with pytest.raises(ValueError, match="sample 0 has 3 events"):
        few(*short)
    few(short[0], short[1], np.zeros_like(short[2]))  # a row of padding only is no sample: no error


def test_trains_through_the_shared_trainer(tmp_path):
    """A few steps of the shared Trainer on camera rows: the task comes from the model, the batch-norm
    statistics move, the evaluation runs with the running averages."""
    from eventlm.data.collator import EventCollator
    from eventlm.tokenization_events import EventTokenizer
    from eventlm.training.arguments import DataArguments, ModelArguments, TrainingArguments, resolve_presets
    from eventlm.training.trainer import Trainer

    W, H, _ = SENSOR
    rng = np.random.default_rng(0)
    rows = []
    for i in range(24):
        label, n = i % 3, int(rng.integers(40, 90))
        x = (rng.integers(0, W // 3, n) + label * (W // 3)).astype(np.int16)  # the class picks a third of the camera
        rows.append({"t": np.sort(rng.integers(0, 50_000, n)).astype(np.int64), "x": x,
                     "y": rng.integers(0, H, n).astype(np.int16), "p": rng.integers(0, 2, n).astype(np.int8),
                     "label": label})
    model = trained_like(FlaxSpikeDrivenTransformerForSequenceClassification(tiny_config(num_layers=1), seed=0))
    stats_before = jax.tree_util.tree_map(np.asarray, model.batch_stats)
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=3, per_device_train_batch_size=8,
                             per_device_eval_batch_size=8, ssm_base_lr=1e-4, warmup_epochs=0.0, logging_steps=1,
                             eval_strategy="no", disable_tqdm=True, report_to="none", seed=0)
    resolve_presets(ModelArguments(preset="tiny"), DataArguments(), args)
    collator = EventCollator(EventTokenizer(sensor_size=SENSOR), pad_to_multiple_of=32, num_labels=3)
    trainer = Trainer(model, args, rows, rows[:8], collator)
    try:
        train = trainer.train(resume=False)
        metrics = trainer.evaluate(prefix="eval").metrics
    finally:
        trainer.close()
    assert trainer.task.name == "classification" and np.isfinite(train["train_loss"])
    assert np.isfinite(metrics["eval_loss"]) and metrics["eval_samples"] == 8
    moved = [not np.allclose(a, b) for a, b in zip(jax.tree_util.tree_leaves(model.batch_stats),
                                                   jax.tree_util.tree_leaves(stats_before))]
    assert all(moved)


def test_task_preset_builds_the_model_for_the_tokenizers_camera():
    """`--preset sdt-dvs-gesture` picks the backbone by its model type and the camera from the tokenizer; a
    tokenizer of another camera than the model's is refused with both sizes named."""
    from eventlm.tokenization_events import EventTokenizer
    from eventlm.training.arguments import DataArguments, ModelArguments, TrainingArguments, resolve_presets
    from eventlm.training.pipelines import check_vocabulary, new_config

    model_args = ModelArguments(preset="sdt-dvs-gesture")
    resolve_presets(model_args, DataArguments(dataset_name="someone/events"), TrainingArguments())
    camera = EventTokenizer(sensor_size=(32, 24, 2))
    config = new_config(model_args, camera, num_labels=11)
    assert isinstance(config, SpikeDrivenTransformerConfig) and config.sensor_size == [32, 24, 2]
    assert (config.num_frames, config.hidden_size, config.num_layers, config.vocab_size) == (16, 256, 2, 32 * 24 * 2 + 3)
    check_vocabulary(config, camera)
    with pytest.raises(ValueError, match=r"frames of a \(32, 24, 2\) sensor .* tokenizer is for \(128, 128, 2\)"):
        check_vocabulary(config, EventTokenizer.from_pretrained("dvs-gesture"))


# ---------------------------------------------------------------------------------- streaming, TET, new options

STREAMING_CASES = {
    "image-by-events": dict(split_by="events", frame_events=37, num_frames=12, dvs_mode=True),
    "image-by-duration": dict(split_by="duration", frame_us=18_000, num_frames=13, spike_mode="plif"),
    "audio-causal": dict(frame_layout="channels", stem_kernel_size=1, pooling_stat="0000", attention_over="time",
                         causal_attention=True, split_by="duration", frame_us=15_000, num_frames=16),
}


@pytest.mark.parametrize("case", sorted(STREAMING_CASES))
def test_streaming_frame_by_frame_equals_the_full_forward_on_every_prefix(case):
    """Chunks of random lengths (1 … 70, two streams receiving different numbers of events through the
    attention mask): after every chunk the streamed logits equal the full forward on the prefix; frames
    close by count or by time, some chunks close several frames at once, some none."""
    cfg = tiny_config(**STREAMING_CASES[case])
    model = trained_like(FlaxSpikeDrivenTransformerForSequenceClassification(cfg, seed=2), seed=4)
    ids, ts, mask = random_tokens(seed=11, batch=2, length=320)
    n = mask.sum(axis=1)
    rng = np.random.default_rng(5)
    state, pos, checked, moved = model.init_stream(2), 0, 0, 0
    previous = np.asarray(state.logits)
    while pos < ids.shape[1]:
        k = min(int(rng.choice([1, 2, 5, 17, 70])), ids.shape[1] - pos)
        part = (np.arange(pos, pos + k)[None] < n[:, None]).astype(np.int32)
        out, state = model.stream(ids[:, pos:pos + k], ts[:, pos:pos + k], state, attention_mask=part)
        pos += k
        if rng.random() < 0.3 or pos == ids.shape[1]:
            prefix = (np.arange(ids.shape[1])[None] < np.minimum(n, pos)[:, None]).astype(np.int32)
            full = np.asarray(model(ids, ts, attention_mask=prefix).logits)
            np.testing.assert_allclose(np.asarray(out.logits), full, rtol=1e-5, atol=1e-5 * np.abs(full).max())
            checked += 1
        moved += not np.allclose(np.asarray(out.logits), previous)
        previous = np.asarray(out.logits)
    assert checked >= 5 and moved >= 5  # the prediction really changes as frames close


@pytest.mark.parametrize("case", sorted(STREAMING_CASES))
def test_next_event_streaming_equals_the_full_forward_for_every_event(case):
    """A next-event SDT streamed in chunks of random lengths (two streams, different numbers of events): every
    event's token logits and gap mixture equal the full forward's at that position (the head is causal, so the
    full forward over the whole sample is the reference for every prefix)."""
    from eventlm.models.spike_driven_transformer.modeling_flax_spike_driven_transformer import \
        FlaxSpikeDrivenTransformerForNextEventPrediction

    cfg = tiny_config(**STREAMING_CASES[case])
    model = trained_like(FlaxSpikeDrivenTransformerForNextEventPrediction(cfg, seed=2), seed=6)
    ids, ts, mask = random_tokens(seed=12, batch=2, length=300)
    n = mask.sum(axis=1)
    full = model(ids, ts, attention_mask=mask)
    rng = np.random.default_rng(7)
    state, pos, pieces = model.init_stream(2), 0, []
    while pos < ids.shape[1]:
        k = min(int(rng.choice([1, 3, 16, 70])), ids.shape[1] - pos)
        part = (np.arange(pos, pos + k)[None] < n[:, None]).astype(np.int32)
        out, state = model.stream(ids[:, pos:pos + k], ts[:, pos:pos + k], state, attention_mask=part)
        pieces.append(out)
        pos += k
    valid = mask[..., None] > 0
    for name in ("logits", "gap_mixture_logits", "gap_log_means", "gap_log_scales"):
        got = np.concatenate([getattr(p, name) for p in pieces], axis=1)
        ref = np.asarray(getattr(full, name))
        np.testing.assert_allclose(np.where(valid, got, 0), np.where(valid, ref, 0), rtol=1e-5,
                                   atol=1e-5 * np.abs(ref).max(), err_msg=name)
    contexts = set(np.asarray(_context(model, ids, ts, mask)).ravel().tolist())
    assert len(contexts) >= 5  # the events read many different frames


@pytest.fixture(scope="module")
def audio_generator():
    """A trained-like causal audio SDT with the next-event head (frames by duration; its biased gap head draws long
    gaps that close many frames), shared by the generation tests: its compiled generation is kept on it."""
    from eventlm.models.spike_driven_transformer.modeling_flax_spike_driven_transformer import \
        FlaxSpikeDrivenTransformerForNextEventPrediction

    cfg = tiny_config(**{**STREAMING_CASES["audio-causal"], "num_frames": 400})  # room for the generated time
    return trained_like(FlaxSpikeDrivenTransformerForNextEventPrediction(cfg, seed=1), seed=3)


def test_next_event_sdt_generates_greedily_from_its_own_full_forward(audio_generator):
    """generate on a frame model (one compiled scan over the frame step): the same seed gives the same events;
    with temperature 0 every generated token is the arg-max of the full forward's prediction at the event
    before it (special tokens banned), and time never runs backwards."""
    from eventlm.modeling_events import banned_tokens

    model = audio_generator
    ids, ts, _ = random_tokens(seed=4, batch=1, length=60)
    prompt = (ids[0, :40], ts[0, :40])
    a, state = model.generate(num_events=12, temperature=1.0, seed=5, prompt=prompt, return_state=True)
    b = model.generate(num_events=12, temperature=1.0, seed=5, prompt=prompt)
    np.testing.assert_array_equal(a[0], b[0]), np.testing.assert_array_equal(a[1], b[1])
    assert int(state.num_events[0]) == 52 and int(state.last_timestamp[0]) == int(a[1][-1])
    tokens, times = model.generate(num_events=10, temperature=0.0, seed=0, prompt=prompt)
    assert np.all(np.diff(np.concatenate([[ts[0, 39]], times])) >= 0)
    all_ids = np.concatenate([prompt[0], tokens])[None]
    all_ts = np.concatenate([prompt[1], times])[None]
    logits = np.array(model(all_ids, all_ts, attention_mask=np.ones_like(all_ids)).logits)[0]
    banned = list(banned_tokens(model.config))
    logits[:, banned] = -np.inf
    np.testing.assert_array_equal(tokens, logits[39:-1].argmax(-1))


def test_models_that_need_the_whole_sample_refuse_to_stream():
    for overrides, words in ((dict(), "split_by='number'"),
                             (dict(attention_over="time", split_by="events", frame_events=9), "later frames")):
        model = FlaxSpikeDrivenTransformerForSequenceClassification(tiny_config(**overrides), seed=0)
        with pytest.raises(ValueError, match=words):
            model.init_stream(1)


def test_close_frames_by_hand():
    from eventlm.models.spike_driven_transformer.frames import close_frames

    # duration 10 µs, channels < 5; tokens 7 are special (carry time, place no event); a fresh stream starts at
    # its first real event (t = 3 here: bos at 0 µs, gap 3)
    tokens = np.array([[7, 1, 2, 3, 7, 4]])
    gaps = np.array([[0, 3, 4, 9, 30, 1]])
    offset, closed, open_events, since, started, known = close_frames(
        tokens, gaps, np.array([6]), 5, "duration", 10, np.array([0]), np.array([0]), np.array([False]))
    # times from the first event: 0, 4, 13, (43), 44 → frames 0, 0, 1, 4; 4 frames closed; the open one began at 40
    assert offset.tolist() == [[-1, 0, 0, 1, -1, 4]] and closed.tolist() == [4]
    assert known.tolist() == [[0, 0, 0, 1, 1, 4]]  # frame 0 is known complete at t = 13, frames 1-3 at t = 44
    assert open_events.tolist() == [1] and since.tolist() == [4] and started.tolist() == [True]
    # continuing: 5 µs later (since 4 + 5 = 9) still the open frame, 1 µs more closes it
    offset, closed, open_events, since, _, known = close_frames(np.array([[0, 0]]), np.array([[5, 1]]), np.array([2]),
                                                                5, "duration", 10, open_events, since, started)
    assert offset.tolist() == [[0, 1]] and closed.tolist() == [1] and open_events.tolist() == [1]
    assert known.tolist() == [[0, 1]]
    assert since.tolist() == [0]
    offset, closed, open_events, _, _, known = close_frames(np.array([[0, 9, 1, 2, 3]]), np.zeros((1, 5), int),
                                                            np.array([5]), 5, "events", 3, np.array([2]),
                                                            np.array([0]), np.array([True]))
    assert offset.tolist() == [[0, -1, 1, 1, 1]] and closed.tolist() == [2] and open_events.tolist() == [0]
    assert known.tolist() == [[1, 1, 1, 1, 2]]  # an event that fills its frame closes it


@pytest.mark.parametrize("split_by, length", [("events", 3), ("duration", 10)])
def test_one_event_frame_rule_on_the_device_equals_the_host_rule(split_by, length):
    """`close_frames_one_event` (inside jit, what compiled generation runs) against the host `close_frames` fed the
    same stream one event at a time: random tokens with special ones (7: time, no event), gaps from 0 to 40 frame
    lengths (several frames closed by one event), a stream that starts with special tokens."""
    from eventlm.models.spike_driven_transformer.frames import close_frames, close_frames_one_event

    rng = np.random.default_rng(3)
    one = jax.jit(lambda *a: close_frames_one_event(*a, split_by, length))
    host = (np.array([0]), np.array([0]), np.array([False]))
    device = (jnp.int32(0), jnp.int32(0), jnp.asarray(False))
    closed_total = 0
    for i in range(300):
        token = 7 if (i < 3 or rng.random() < 0.1) else int(rng.integers(0, 5))
        gap = int(rng.choice([0, 1, rng.integers(0, length), rng.integers(0, 40 * length)]))
        _, closed, *host, known = close_frames(np.array([[token]]), np.array([[gap]]), np.array([1]), 5, split_by,
                                               length, *host)
        got_closed, joins, *device = one(token < 5, jnp.int32(gap), *device)
        assert int(got_closed) == int(closed[0]), i
        assert [int(v) for v in device] == [int(v[0]) for v in host], i
        assert bool(joins) == (split_by == "events" and int(closed[0]) > 0)
        assert token == 7 or int(known[0, 0]) == int(closed[0])  # a real event's last complete frame: closed − 1
        closed_total += int(closed[0])
    assert closed_total > 30  # frames really closed, some events closing several


def test_compiled_generation_of_a_frame_model_equals_one_stream_call_per_event(audio_generator):
    """A frame model's `generate` (one compiled scan: the frames an event closes run inside it) against drawing the
    same events and feeding each through `stream` (the host frame step), by count and by duration: the same
    events, the same state afterwards (the readout's running time to float32 rounding), and the state goes on."""
    from eventlm import streaming
    from eventlm.models.spike_driven_transformer.modeling_flax_spike_driven_transformer import \
        FlaxSpikeDrivenTransformerForNextEventPrediction

    for case in ("image-by-events", "audio-causal"):
        model = audio_generator if case == "audio-causal" else trained_like(
            FlaxSpikeDrivenTransformerForNextEventPrediction(tiny_config(**STREAMING_CASES[case]), seed=1), seed=3)
        cfg = model.config
        ids, ts, _ = random_tokens(seed=4, batch=1, length=60)
        prompt = (ids[0, :40], ts[0, :40])
        (tokens, times), state = model.generate(num_events=12, seed=5, prompt=prompt, return_state=True)
        ref = streaming.init_stream(model, 1)
        out, ref = streaming.stream(model, prompt[0][None], prompt[1][None], ref)
        prediction = tuple(o[0, -1] for o in (out.logits, out.gap_mixture_logits, out.gap_log_means,
                                              out.gap_log_scales))
        (ref_tokens, ref_times), ref = streaming._generate_through_stream(
            model, streaming.streamer_for(model), ref, prediction, 12, 1.0, 5, None, None, True)
        np.testing.assert_array_equal(tokens, ref_tokens), np.testing.assert_array_equal(times, ref_times)
        assert len(set(tokens.tolist())) > 3
        np.testing.assert_allclose(np.asarray(state.buffer), np.asarray(ref.buffer), rtol=1e-5, atol=1e-6, err_msg=case)
        assert state.num_events.tolist() == ref.num_events.tolist() == [52]
        later = (ids[0, 40:50] % cfg.num_channels, times[-1] + np.arange(1, 11) * 3_000)
        a, _ = streaming.stream(model, later[0][None], later[1][None], state)
        b, _ = streaming.stream(model, later[0][None], later[1][None], ref)
        np.testing.assert_allclose(np.asarray(a.logits), np.asarray(b.logits), rtol=1e-5, atol=1e-5)
    # an open frame whose clock passed int32 range (special tokens carry time without closing it) steps on the host
    streamer = streaming.streamer_for(model)
    lo, _ = streamer._framing_slice
    assert streamer.generates_on_device(state)
    far = np.array(state.buffer)
    far[0, lo + 2] = 2**30 // streaming.SINCE_US_SPLIT  # since_us_high: 2^30 µs
    assert not streamer.generates_on_device(state.replace(buffer=far))


def test_frame_resize_is_torchvisions_bilinear_resize_without_antialiasing():
    torch = pytest.importorskip("torch")
    from eventlm.models.spike_driven_transformer.frames import resize_frames

    x = np.random.default_rng(0).integers(0, 5, (2, 3, 2, 24, 36)).astype(np.float32)
    for size in ([18, 12], [12, 8], [9, 6], [36, 24]):
        ours = np.asarray(resize_frames(jnp.asarray(x), size))
        ref = torch.nn.functional.interpolate(torch.from_numpy(x.reshape(-1, 2, 24, 36)), size=(size[1], size[0]),
                                              mode="bilinear", align_corners=False, antialias=False)
        np.testing.assert_allclose(ours, ref.numpy().reshape(ours.shape), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(ours, bilinear_np(x, size), rtol=1e-6, atol=1e-6)


def test_tet_loss_equals_the_references_criterion_written_out():
    """TET on trained-like weights against criterion.TET_loss of the reference written in numpy: per-frame
    logits (the head's linear layer on every frame's spikes), (1 − λ)·mean_t CE + λ·MSE(logits, means)."""
    cfg = tiny_config(classification_loss="tet", tet_lamb=0.2, tet_means=0.5)
    model = trained_like(FlaxSpikeDrivenTransformerForSequenceClassification(cfg, seed=3))
    ids, ts, mask = random_tokens(seed=8)
    labels = np.array([2, 0, 1])
    out = model(ids, ts, attention_mask=mask, labels=labels)
    frames, _ = reference_frames(ids, ts, mask, cfg.num_frames, cfg.split_by)
    _, spikes = reference_forward(model, frames)
    head = jax.tree_util.tree_map(np.asarray, model.params)["classifier"]
    logits = spikes @ head["kernel"] + head["bias"]  # (T, B, C)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    ce = -np.mean([logp[t, np.arange(3), labels].mean() for t in range(cfg.num_frames)])
    expected = 0.8 * ce + 0.2 * np.mean((logits - 0.5) ** 2)
    np.testing.assert_allclose(float(out.loss), expected, rtol=1e-4)
    plain = model.__class__(tiny_config(), seed=3)
    plain.params, plain.batch_stats = model.params, model.batch_stats
    assert abs(float(plain(ids, ts, attention_mask=mask, labels=labels).loss) - expected) > 1e-3  # not plain CE
    np.testing.assert_allclose(np.asarray(out.logits), logits.mean(0), rtol=1e-4, atol=1e-5)


def test_new_options_are_checked_and_long_samples_are_refused_naming_the_value():
    with pytest.raises(ValueError, match="frame_events"):
        tiny_config(split_by="events")
    with pytest.raises(ValueError, match="frame_size"):
        tiny_config(frame_size=[5, 5])
    with pytest.raises(ValueError, match="causal_attention"):
        tiny_config(causal_attention=True)
    with pytest.raises(ValueError, match="classifier_pooling"):
        tiny_config(classification_loss="tet", classifier_pooling="last")
    for name in ("cifar10-dvs", "shd", "ssc"):
        SpikeDrivenTransformerConfig.from_preset(name)
    model = FlaxSpikeDrivenTransformerForSequenceClassification(
        tiny_config(split_by="duration", frame_us=10_000, num_frames=5), seed=0)
    ids, ts, mask = random_tokens(seed=1)
    with pytest.raises(ValueError, match=r"sample 0 fills \d+ frames of 10000 µs .*num_frames=5"):
        model(ids, ts, attention_mask=mask)


@pytest.mark.parametrize("overrides", [dict(split_by="events", frame_events=30, num_frames=16),
                                       dict(frame_layout="channels", stem_kernel_size=1, pooling_stat="0000",
                                            attention_over="time", causal_attention=True, split_by="duration",
                                            frame_us=12_000, num_frames=20)], ids=["image-by-events", "audio"])
def test_next_event_head_is_causal_and_trains(overrides):
    """Through the shared next-event head: event k reads the last frame complete at k plus its own event
    embedding. Changing the events after k leaves every prediction at positions ≤ k unchanged (trained-like
    weights, so the frames really fire); the loss falls in a few steps; Auto classes and save/load."""
    from eventlm import AutoModelForNextEventPrediction
    from eventlm.models.spike_driven_transformer.modeling_flax_spike_driven_transformer import \
        FlaxSpikeDrivenTransformerForNextEventPrediction

    cfg = tiny_config(**overrides)
    model = trained_like(AutoModelForNextEventPrediction.from_config(cfg, seed=0))
    assert type(model) is FlaxSpikeDrivenTransformerForNextEventPrediction
    ids, ts, mask = random_tokens(seed=2, batch=2, length=300)
    ids, ts, mask = ids[:, :200], ts[:, :200], np.ones((2, 200), np.int32)
    ids[:, -1], ts[:, -1] = ids[:, -2], ts[:, -2]  # no eos inside the cut
    out = model(ids, ts, attention_mask=mask)
    cut = 120
    changed_ids, changed_ts = ids.copy(), ts.copy()
    rng = np.random.default_rng(0)
    changed_ids[:, cut + 1:] = rng.integers(0, SENSOR[0] * SENSOR[1] * SENSOR[2], (2, 200 - cut - 1))
    changed_ts[:, cut + 1:] = np.sort(ts[:, cut][:, None] + rng.integers(0, 90_000, (2, 200 - cut - 1)), axis=1)
    changed = model(changed_ids, changed_ts, attention_mask=mask)
    for a, b in ((out.logits, changed.logits), (out.gap_log_means, changed.gap_log_means)):
        np.testing.assert_array_equal(np.asarray(a)[:, :cut + 1], np.asarray(b)[:, :cut + 1])
        assert not np.allclose(np.asarray(a)[:, cut + 2:], np.asarray(b)[:, cut + 2:])
    contexts = set(np.asarray(_context(model, ids, ts, mask)).ravel().tolist())
    assert len(contexts) >= 5  # the head reads many different frames

    import optax
    labels = np.where(mask > 0, ids, -100)
    opt = optax.adam(3e-3)
    params, state = model.params, None
    state = opt.init(params)

    @jax.jit
    def step(params, state):
        def loss(p):
            return model.module.apply({"params": p, "batch_stats": model.batch_stats}, *_prepared(model, ids, ts, mask),
                                      labels=labels).loss
        value, grads = jax.value_and_grad(loss)(params)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state, value

    losses = []
    for _ in range(6):
        params, state, value = step(params, state)
        losses.append(float(value))
    assert losses[-1] < losses[0] - 0.1, losses


def _prepared(model, ids, ts, mask):
    from eventlm.modeling_events import prepare_inputs

    return prepare_inputs(model.config, ids, ts, mask)


def _context(model, ids, ts, mask):
    from eventlm.models.spike_driven_transformer.modeling_flax_spike_driven_transformer import \
        FlaxSpikeDrivenTransformerBackbone

    variables = {"params": model.params["sdt"], "batch_stats": model.batch_stats["sdt"]}
    return FlaxSpikeDrivenTransformerBackbone(model.config).apply(variables, *_prepared(model, ids, ts, mask)).event_context


def test_next_event_needs_a_causal_sdt():
    from eventlm.models.spike_driven_transformer.modeling_flax_spike_driven_transformer import \
        FlaxSpikeDrivenTransformerForNextEventPrediction

    with pytest.raises(ValueError, match="split_by='number' cuts a sample"):
        FlaxSpikeDrivenTransformerForNextEventPrediction(tiny_config(), seed=0)


def test_streaming_keeps_long_open_frames_exact_past_2_to_the_24_microseconds():
    """A frame open for more than 2^24 µs (16.8 s): the state row's float32 would round the µs since it began
    (to even above 2^24) and put an event with the same timestamp as the chunk's last into the next frame;
    the row keeps them as two exact halves, so streaming equals the full forward."""
    cfg = tiny_config(split_by="duration", frame_us=17_000_000, num_frames=3)
    model = trained_like(FlaxSpikeDrivenTransformerForSequenceClassification(cfg, seed=2), seed=4)
    W, H, _ = SENSOR
    times = np.concatenate([np.arange(17) * 1_000_000, [16_999_999, 16_999_999, 17_000_001],
                            17_000_001 + np.arange(1, 30) * 999_999]).astype(np.int64)
    rng = np.random.default_rng(2)
    ids = (rng.integers(0, 2, times.size) * W * H + rng.integers(0, H, times.size) * W
           + rng.integers(0, W, times.size))[None]
    ts, mask = times[None], np.ones((1, times.size), np.int32)
    state = model.init_stream(1)
    for lo, hi in ((0, 18), (18, 19), (19, 30), (30, times.size)):  # a chunk ends at the first 16,999,999 µs
        out, state = model.stream(ids[:, lo:hi], ts[:, lo:hi], state)
        full = np.asarray(model(ids[:, :hi], ts[:, :hi], attention_mask=mask[:, :hi]).logits)
        np.testing.assert_allclose(np.asarray(out.logits), full, rtol=1e-5, atol=1e-5 * np.abs(full).max())
