"""Conversion of original EventSSM checkpoints (issue 6), without the reference code.

Each fixture writes a small checkpoint the way the reference trainer does (its TrainState as a state dict:
step, params, opt_state, key, model_state) with the reference's exact variable names and shapes, in both
on-disk formats of flax.training.checkpoints (an orbax PyTree folder and a msgpack file). The converted
folder is then checked tensor by tensor, and its tokenizer + model are checked end to end from raw events
against an independent float64 numpy forward of the reference algorithm (gap after each event, last event
dropped, pooling keeps a window's first event, only complete windows read out, timepool over the whole
duration), whatever the padding.
"""

import json
import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("JAX_PLATFORMS", "cpu")

from eventlm.models.eventssm import convert_original_eventssm_checkpoint as conv  # noqa: E402

# three tiny reference runs: (reference_config, overrides, on-disk format)
CASES = {
    # audio, layer norm, 2 stages that widen (Dense_1, matrix D), timepool pooling + readout, clipped eigenvalues
    "audio-layer": ("shd/tiny", dict(num_embeddings=12, num_classes=3, d_model=4, d_ssm=4, ssm_block_size=2,
                                     num_stages=2, num_layers_per_stage=2, pooling_stride=2, pooling_mode="timepool",
                                     classification_mode="timepool", state_expansion_factor=2, clip_eigs=True),
                    "orbax"),
    # audio, batch norm with statistics, conjugate symmetry, avg pooling, mean readout
    "audio-batch": ("ssc/small", dict(num_embeddings=10, num_classes=4, d_model=4, d_ssm=4, ssm_block_size=4,
                                      num_stages=1, num_layers_per_stage=2, pooling_stride=3, pooling_mode="avgpool",
                                      classification_mode="pool"), "msgpack"),
    # camera with the reference's x·y + W·H·p tokens, pooling "last" (keeps the first event), zoh
    "camera": ("dvs/small", dict(sensor_size=[4, 4, 2], num_classes=2, d_model=4, d_ssm=4, ssm_block_size=2,
                                 num_stages=1, num_layers_per_stage=2, pooling_stride=2, pooling_mode="last",
                                 classification_mode="pool", state_expansion_factor=1, discretization="zoh"),
               "msgpack"),
}


# ------------------------------------------------------------------------------------------------
# Writing checkpoints as the reference trainer does
# ------------------------------------------------------------------------------------------------


def stage_sizes(s):
    """[(h_in, h_out, P)] per stage as the reference's StackedEncoderModel builds them (<= 2 stages)."""
    f, d, p = s["state_expansion_factor"], s["d_model"], s["d_ssm"]
    return [(d, d if i == 0 else f * d, p * f**i) for i in range(s["num_stages"])]


def reference_state(s, rng):
    """The reference TrainState's state dict with its exact names and shapes, random values everywhere."""
    g = lambda *shape: rng.standard_normal(shape).astype(np.float32)  # noqa: E731
    norm = "BatchNorm_0" if s["batchnorm"] else "LayerNorm_0"
    encoder = {"encoder": {"embedding": g(s["num_embeddings"], s["d_model"])}}
    stats = {}
    for i, (h_in, h_out, p) in enumerate(stage_sizes(s)):
        local = p // 2 if s["conj_sym"] else p
        layers, layer_stats = {}, {}
        for l in range(s["num_layers_per_stage"]):
            a = h_in if l == 0 else h_out
            layer = {
                norm: {"scale": 1 + 0.3 * g(a), "bias": 0.3 * g(a)},
                "S5SSM_0": {"Lambda_re": -rng.uniform(0.1, 1.0, local).astype(np.float32), "Lambda_im": 3 * g(local),
                            "B": g(local, a, 2), "C": g(h_out, local, 2),
                            "D": g(a) if a == h_out else g(h_out, a),
                            "log_step": rng.uniform(np.log(0.05), np.log(0.5), (local, 1)).astype(np.float32)},
                "Dense_0": {"kernel": g(h_out, h_out), "bias": g(h_out)},
            }
            if a != h_out:
                layer["Dense_1"] = {"kernel": g(a, h_out), "bias": g(h_out)}
            layers[f"SequenceLayer_{l}"] = layer
            layer_stats[f"SequenceLayer_{l}"] = {norm: {"mean": 0.3 * g(a), "var": rng.uniform(0.5, 2, a).astype(np.float32)}}
        encoder[f"stages_{i}"] = layers
        stats[f"stages_{i}"] = layer_stats
    params = {"encoder": encoder, "decoder": {"kernel": g(stage_sizes(s)[-1][1], s["num_classes"]),
                                              "bias": g(s["num_classes"])}}
    model_state = {"batch_stats": {"encoder": stats}} if s["batchnorm"] else {}
    opt = {"count": np.int32(3), "mu": {"decoder": {"bias": g(s["num_classes"])}}}  # optimizer state rides along
    return {"step": 5, "params": params, "opt_state": {"0": opt}, "key": np.array([0, 42], np.uint32),
            "model_state": model_state}


def write_checkpoint(folder: Path, state, fmt, step=5):
    """checkpoints/checkpoint_<step> as flax.training.checkpoints.save_checkpoint writes it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"checkpoint_{step}"
    if fmt == "orbax":
        import orbax.checkpoint as ocp

        ocp.PyTreeCheckpointer().save(path, state)
    else:
        from flax import serialization

        path.write_bytes(serialization.msgpack_serialize(state))
    return path


# ------------------------------------------------------------------------------------------------
# An independent float64 forward of the reference model from raw events
# ------------------------------------------------------------------------------------------------


def gelu(x):  # flax nn.gelu default (tanh approximation)
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))


def pool(x, dt, stride, mode):
    """Reference EventPooling over the first floor(n / stride) complete windows."""
    keep = (len(x) // stride) * stride
    x, dt = x[:keep], dt[:keep]
    if mode == "last":  # the reference keeps x[::stride]: each window's first event
        return x[::stride]
    w = np.ones_like(dt) if mode == "avgpool" else dt + 1e-6
    xw = (x * w[:, None]).reshape(-1, stride, x.shape[1]).sum(1)
    return xw / w.reshape(-1, stride).sum(1)[:, None]


def numpy_reference_logits(state, s, events):
    p, stats = state["params"], state["model_state"].get("batch_stats", {})
    t = events["t"].astype(np.int64)
    dt = np.diff(t) / 1000.0  # gap after each event, ms; the last event only ends the stream
    x = events["x"][:-1].astype(np.int64)
    if s["sensor_size"][1] > 1:
        W, H, _ = s["sensor_size"]
        tokens = x * events["y"][:-1].astype(np.int64) + W * H * events["p"][:-1].astype(np.int64)
    else:
        tokens = x
    h = p["encoder"]["encoder"]["embedding"].astype(np.float64)[tokens]
    for i in range(s["num_stages"]):
        for l in range(s["num_layers_per_stage"]):
            lp = p["encoder"][f"stages_{i}"][f"SequenceLayer_{l}"]
            stride = s["pooling_stride"] if l == 0 else 1
            if s["batchnorm"]:
                nm, st = lp["BatchNorm_0"], stats["encoder"][f"stages_{i}"][f"SequenceLayer_{l}"]["BatchNorm_0"]
                u = (h - st["mean"]) / np.sqrt(st["var"] + 1e-5) * nm["scale"] + nm["bias"]
            else:
                nm = lp["LayerNorm_0"]
                u = (h - h.mean(-1, keepdims=True)) / np.sqrt(h.var(-1, keepdims=True) + 1e-6) * nm["scale"] + nm["bias"]
            ssm = {k: v.astype(np.float64) for k, v in lp["S5SSM_0"].items()}
            re = np.minimum(ssm["Lambda_re"], -1e-4) if s["clip_eigs"] else ssm["Lambda_re"]
            lam, step = re + 1j * ssm["Lambda_im"], np.exp(ssm["log_step"][:, 0])
            B, C = ssm["B"][..., 0] + 1j * ssm["B"][..., 1], ssm["C"][..., 0] + 1j * ssm["C"][..., 1]
            state_x, xs = np.zeros(len(lam), complex), []
            for k in range(len(u)):  # x_k = exp(Λ s Δt_k) x_{k-1} + γ_k B u_k
                gamma = (np.exp(lam * step * dt[k]) - 1) / lam if s["discretization"] == "zoh" else (
                    (np.exp(lam * step) - 1) / lam)
                state_x = np.exp(lam * step * dt[k]) * state_x + gamma * (B @ u[k])
                xs.append(state_x)
            xs = np.array(xs)
            skip = h
            if stride > 1:
                keep = (len(u) // stride) * stride
                xs = xs[:keep:stride]
                u, skip = pool(u, dt, stride, s["pooling_mode"]), pool(skip, dt, stride, s["pooling_mode"])
                dt = dt[:keep].reshape(-1, stride).sum(1)
            y = (xs @ C.T).real * (2 if s["conj_sym"] else 1)
            y = y + (u * ssm["D"] if ssm["D"].ndim == 1 else u @ ssm["D"].T)
            y = y * (1 / (1 + np.exp(-(gelu(y) @ lp["Dense_0"]["kernel"] + lp["Dense_0"]["bias"]))))
            if "Dense_1" in lp:
                skip = skip @ lp["Dense_1"]["kernel"] + lp["Dense_1"]["bias"]
            h = skip + y
    if s["classification_mode"] == "pool":
        read = h.mean(0)
    else:  # masked_timepool divides by the whole duration (the padded batch's sum of gaps)
        read = (h * (dt + 1e-6)[:, None]).sum(0) / ((t[-1] - t[0]) / 1000.0)
    return read @ p["decoder"]["kernel"] + p["decoder"]["bias"]


def random_events(rng, s, n):
    W, H, P = s["sensor_size"]
    ev = np.zeros(n, dtype=[("t", np.int64), ("x", np.int16), ("y", np.int16), ("p", np.int8)])
    ev["t"] = 10**6 + np.cumsum(rng.integers(0, 400, n))  # equal timestamps happen
    ev["x"] = rng.integers(0, W, n)
    ev["y"] = rng.integers(0, H, n)
    ev["p"] = rng.integers(0, P, n) if H > 1 else 1  # tonic's audio samples carry p = 1
    return ev


# ------------------------------------------------------------------------------------------------
# Fixtures: one conversion per case (module scope: each model compiles once)
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=sorted(CASES))
def converted(request, tmp_path_factory):
    name = request.param
    reference_config, overrides, fmt = CASES[name]
    s = conv.reference_settings(reference_config, overrides)
    rng = np.random.default_rng(len(name))
    state = reference_state(s, rng)
    root = tmp_path_factory.mktemp(name)
    write_checkpoint(root / "run" / "checkpoints", state, fmt)
    out = conv.convert_checkpoint(root / "run", reference_config, root / "out", overrides)
    return dict(name=name, settings=s, state=state, out=out, fmt=fmt, rng=rng, reference_config=reference_config,
                overrides=overrides, root=root)


def test_every_tensor_lands_in_its_place(converted):
    from eventlm.modeling_flax_utils import load_safetensors

    s, p = converted["settings"], converted["state"]["params"]
    stored = {k: np.asarray(v) for k, v in load_safetensors(converted["out"] / "model.safetensors").items()}
    expected = {}
    emb = p["encoder"]["encoder"]["embedding"]
    expected["params.eventssm.embed.embedding"] = np.concatenate([emb, np.zeros((3, emb.shape[1]))])
    names = {"LayerNorm_0": "norm", "BatchNorm_0": "norm", "S5SSM_0": "ssm", "Dense_0": "gate", "Dense_1": "skip_proj"}
    for i in range(s["num_stages"]):
        for l in range(s["num_layers_per_stage"]):
            for ref_mod, leaves in p["encoder"][f"stages_{i}"][f"SequenceLayer_{l}"].items():
                for leaf, value in leaves.items():
                    value = value[:, 0] if leaf == "log_step" else value
                    expected[f"params.eventssm.stage{i}_block{l}.{names[ref_mod]}.{leaf}"] = value
            if s["batchnorm"]:
                st = converted["state"]["model_state"]["batch_stats"]["encoder"][f"stages_{i}"][f"SequenceLayer_{l}"]
                for leaf, value in st["BatchNorm_0"].items():
                    expected[f"batch_stats.eventssm.stage{i}_block{l}.norm.{leaf}"] = value
    expected["params.classifier.kernel"] = p["decoder"]["kernel"]
    expected["params.classifier.bias"] = p["decoder"]["bias"]
    assert sorted(stored) == sorted(expected)
    for key, value in expected.items():
        assert stored[key].dtype == np.float32, key
        np.testing.assert_array_equal(stored[key], np.asarray(value, np.float32), err_msg=key)


def test_config_tokenizer_and_card(converted):
    from eventlm import EventTokenizer
    from eventlm.models.eventssm.configuration_eventssm import EventSSMConfig

    s, out = converted["settings"], converted["out"]
    config = EventSSMConfig.from_pretrained(out)
    assert (config.gap_convention, config.pooling_keep, config.readout_convention) == ("after", "first", "reference")
    assert config.num_labels == s["num_classes"] and config.time_unit_us == 1000.0
    assert config.norm == ("batch" if s["batchnorm"] else "layer")
    tok = EventTokenizer.from_pretrained(out)
    assert tok.vocab_size == config.vocab_size and tok.pad_token_id == config.pad_token_id
    ev = random_events(converted["rng"], s, 30)
    ids = np.asarray(tok(ev)["input_ids"])
    if s["sensor_size"][1] > 1:  # the reference's DVS tokens, collisions included
        W, H, _ = s["sensor_size"]
        assert tok.token_layout == "reference-dvs"
        np.testing.assert_array_equal(ids, ev["x"].astype(int) * ev["y"] + W * H * ev["p"].astype(int))
    else:
        np.testing.assert_array_equal(ids, ev["x"])
    card = (out / "README.md").read_text()
    assert "library_name: eventlm" in card and conv.REFERENCE_REPO in card
    assert "checkpoint_5" in card and converted["reference_config"] in card
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors",
                                                    "tokenizer_config.json"]


def test_logits_match_numpy_reference_from_raw_events_whatever_the_padding(converted):
    from eventlm import AutoModelForSequenceClassification, EventTokenizer

    s, out, rng = converted["settings"], converted["out"], converted["rng"]
    total_stride = s["pooling_stride"] ** s["num_stages"]
    streams = [random_events(rng, s, n) for n in (3 * total_stride + 2, total_stride + 1, 4 * total_stride + 1)]
    want = np.stack([numpy_reference_logits(converted["state"], s, ev) for ev in streams])
    tok = EventTokenizer.from_pretrained(out)
    model = AutoModelForSequenceClassification.from_pretrained(out)
    longest = max(len(ev) for ev in streams)
    for padding in (dict(padding=True), dict(padding="max_length", max_length=longest + 7)):
        batch = tok(streams, return_tensors="np", **padding)
        got = np.asarray(model(batch["input_ids"], batch["timestamps"], batch["attention_mask"]).logits)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * np.abs(want).max(), err_msg=str(padding))


def test_both_formats_give_the_same_folder(converted, tmp_path):
    """The same state written in the other on-disk format converts to identical tensors."""
    from eventlm.modeling_flax_utils import load_safetensors

    other = "msgpack" if converted["fmt"] == "orbax" else "orbax"
    write_checkpoint(tmp_path / "ckpt", converted["state"], other)
    out = conv.convert_checkpoint(tmp_path / "ckpt", converted["reference_config"], tmp_path / "out",
                                  converted["overrides"])
    a = load_safetensors(out / "model.safetensors")
    b = load_safetensors(converted["out"] / "model.safetensors")
    assert sorted(a) == sorted(b)
    for key in a:
        np.testing.assert_array_equal(np.asarray(a[key]), np.asarray(b[key]), err_msg=key)


# ------------------------------------------------------------------------------------------------
# Finding checkpoints, settings, errors
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """A layer-norm audio checkpoint (msgpack) and its settings, for the error tests."""
    reference_config, overrides, _ = CASES["audio-layer"]
    s = conv.reference_settings(reference_config, overrides)
    state = reference_state(s, np.random.default_rng(0))
    root = tmp_path_factory.mktemp("errors")
    write_checkpoint(root / "checkpoints", state, "msgpack", step=5)
    return root / "checkpoints", reference_config, overrides, state


def test_newest_step_is_taken(tmp_path):
    for step in (3, 10, 9):
        (tmp_path / f"checkpoint_{step}").write_bytes(b"")
    (tmp_path / "checkpoint_11.tmp").write_bytes(b"")
    path, fmt = conv.find_checkpoint(tmp_path)
    assert path.name == "checkpoint_10" and fmt == "msgpack"


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda d: d / "missing", "does not exist"),
        (lambda d: d, "holds no EventSSM checkpoint"),
        (lambda d: (d / "checkpoint_2").mkdir() or d, "not an orbax checkpoint"),
        (lambda d: (d / "checkpoint_1").write_bytes(b"\xc1 definitely not msgpack") and d, "not a msgpack checkpoint"),
    ],
    ids=["missing", "empty", "folder-not-orbax", "garbage-file"],
)
def test_not_a_checkpoint(tmp_path, make, match):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match=match):
        conv.convert_checkpoint(make(tmp_path), "shd/tiny", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_msgpack_without_params(tmp_path):
    from flax import serialization

    (tmp_path / "checkpoint_1").write_bytes(serialization.msgpack_serialize({"step": 1, "weights": np.zeros(3)}))
    with pytest.raises(ValueError, match=r"no 'params' tree \(top level: \['step', 'weights'\]\)"):
        conv.read_checkpoint(tmp_path)


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(d_model=6), r"params/decoder/kernel has shape \(8, 3\) but params\.classifier\.kernel .* needs \(12, 3\)"),
        (dict(num_classes=5), r"params/decoder/bias has shape \(3,\) .* needs \(5,\)"),
        (dict(num_embeddings=20), r"embedding has shape \(12, 4\) but the settings give \(20, 4\)"),
        (dict(d_ssm=8, ssm_block_size=4), r"S5SSM_0/B has shape \(4, 4, 2\) .* needs \(8, 4, 2\)"),
        (dict(num_layers_per_stage=1), r"no place .*SequenceLayer_1"),
        (dict(num_layers_per_stage=3), r"lacks .*stage0_block2"),
        (dict(batchnorm=True), "holds no batch-norm statistics"),
    ],
    ids=["d_model", "num_classes", "num_embeddings", "d_ssm", "fewer-layers", "more-layers", "batchnorm"],
)
def test_shapes_that_do_not_fit_the_settings(small_run, tmp_path, change, match):
    ckpt, reference_config, overrides, _ = small_run
    with pytest.raises(ValueError, match=match):
        conv.convert_checkpoint(ckpt, reference_config, tmp_path / "out", {**overrides, **change})
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "name, overrides, match",
    [
        ("shd/huge", {}, "unknown reference_config 'shd/huge'"),
        ("shd/tiny", {"d_modle": 4}, r"unknown reference setting\(s\) \['d_modle'\]"),
        ("shd/tiny", {"d_model": 0}, "'d_model' must be a positive integer, got 0"),
        ("shd/tiny", {"classification_mode": "last"}, "depends on the padding"),
        ("shd/tiny", {"prenorm": False}, "prenorm=false"),
        ("shd/medium", {"num_stages": 3, "state_expansion_factor": 2}, "widens only the second stage"),
        ("dvs/small", {"downsampling": 3}, "powers of two"),
        ("dvs/small", {"num_embeddings": 700}, "num_embeddings=700 does not fit the sensor"),
    ],
)
def test_bad_settings(name, overrides, match):
    with pytest.raises(ValueError, match=match):
        settings = conv.reference_settings(name, overrides)
        tok = conv.reference_tokenizer(settings)
        conv.reference_eventssm_config(settings, tok)


def test_settings_of_the_reference_yaml():
    """Spot checks of the embedded yaml values and what they become."""
    s = conv.reference_settings("ssc/medium")
    config = conv.reference_eventssm_config(s, conv.reference_tokenizer(s))
    assert (config.hidden_size, config.state_size, config.num_ssm_blocks) == (96, 128, 8)
    assert (config.state_expansion_factor, config.hidden_expansion_factor, config.norm) == (2, 2, "batch")
    assert (config.conj_sym, config.dt_min, config.pooling_mode, config.classifier_pooling) == (True, 0.0015, "avg", "mean")
    assert config.num_labels == 35 and config.vocab_size == 703
    s = conv.reference_settings("dvs/small")
    tok = conv.reference_tokenizer(s)
    assert tok.token_layout == "reference-dvs" and tok.num_channels == 32768
    config = conv.reference_eventssm_config(s, tok)
    assert (config.pooling_stride, config.clip_eigs, config.classifier_pooling) == (16, True, "timepool")
    assert conv.reference_settings("dvs/small", {"downsampling": 2})["num_embeddings"] == 8192


def test_config_file_json_and_hydra_yaml(tmp_path):
    (tmp_path / "o.json").write_text(json.dumps({"num_classes": 7, "ssm": {"d_model": 32}}))
    s = conv.reference_settings("shd/tiny", conv.load_config_file(tmp_path / "o.json"))
    assert (s["num_classes"], s["d_model"]) == (7, 32)
    (tmp_path / "config.yaml").write_text(
        "model:\n  ssm_init:\n    dt_min: 0.01\n  ssm:\n    d_model: 48\ntraining:\n  downsampling: 2\nseed: 3\n"
    )
    s = conv.reference_settings("dvs/small", conv.load_config_file(tmp_path / "config.yaml"))
    assert (s["dt_min"], s["d_model"], s["downsampling"], s["num_embeddings"]) == (0.01, 48, 2, 8192)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        conv.load_config_file(tmp_path / "bad.json")


def test_command_line(small_run, tmp_path, capsys):
    ckpt, reference_config, overrides, _ = small_run
    (tmp_path / "o.json").write_text(json.dumps(overrides))
    args = ["--checkpoint_dir", str(ckpt), "--reference_config", reference_config, "--config_json",
            str(tmp_path / "o.json"), "--output_dir", str(tmp_path / "out")]
    assert conv.main(args) == 0
    assert (tmp_path / "out" / "model.safetensors").is_file() and (tmp_path / "out" / "tokenizer_config.json").is_file()
    assert conv.main(args[:1] + [str(tmp_path / "nowhere")] + args[2:]) == 2
    assert "does not exist" in capsys.readouterr().err
    from eventlm import cli  # `eventlm convert-checkpoint` reaches the same main

    assert cli.main(["convert-checkpoint"] + args[:-1] + [str(tmp_path / "out2")]) == 0
    assert (tmp_path / "out2" / "config.json").is_file()
