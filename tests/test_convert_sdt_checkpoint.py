"""Conversion of original Spike-Driven Transformer checkpoints (issue 12, item 4), without the reference code.

Each test writes a small checkpoint the way the reference's train.py does through timm's CheckpointSaver
(torch.save of {"state_dict", "args": the run's argparse.Namespace, "epoch", "arch", "optimizer", "version",
"metric"}) with the reference's exact tensor names and torch layouts, from a tiny Flax model with trained-like
weights; the converted folder (tokenizer + model) must give that model's logits from the same raw events.
Parity with the original PyTorch code itself is checked beside the project, not here (see the issue).
"""

import argparse
import os

import numpy as np
import pytest

os.environ.setdefault("JAX_PLATFORMS", "cpu")

torch = pytest.importorskip("torch")

import jax  # noqa: E402

from eventlm import AutoModelForSequenceClassification, EventTokenizer, cli  # noqa: E402
from eventlm.data.collator import EventCollator  # noqa: E402
from eventlm.models.spike_driven_transformer import convert_original_sdt_checkpoint as conv  # noqa: E402
from eventlm.models.spike_driven_transformer.configuration_spike_driven_transformer import \
    SpikeDrivenTransformerConfig  # noqa: E402
from eventlm.models.spike_driven_transformer.modeling_flax_spike_driven_transformer import \
    FlaxSpikeDrivenTransformerForSequenceClassification  # noqa: E402

from test_spike_driven_transformer import decoded_events, random_tokens, tiny_config, trained_like  # noqa: E402

SIZE = 12  # the reference's frames are square (img_size × img_size)


def source_model(camera=SIZE, **overrides):
    """A tiny trained-like Flax model on a square camera × camera sensor whose frames are resized to SIZE × SIZE
    (tiny_config's fields)."""
    cfg = tiny_config(**overrides)
    fields = {k: getattr(cfg, k) for k in ("num_frames", "hidden_size", "num_heads", "num_layers", "mlp_ratio",
                                           "pooling_stat", "num_labels", "spike_mode", "dvs_mode")}
    if camera != SIZE:
        fields["frame_size"] = [SIZE, SIZE]
    square = SpikeDrivenTransformerConfig.for_sensor((camera, camera, 2), **fields)
    return trained_like(FlaxSpikeDrivenTransformerForSequenceClassification(square, seed=1), seed=3)


def run_args(cfg, dataset="gesture", img_size=SIZE, **extra):
    """The run's argparse.Namespace as train.py pickles it (model keys plus some training ones)."""
    return argparse.Namespace(
        dataset=dataset, img_size=img_size, in_channels=2, num_classes=cfg.num_labels, dim=cfg.hidden_size,
        layer=cfg.num_layers, num_heads=cfg.num_heads, mlp_ratio=cfg.mlp_ratio, time_steps=cfg.num_frames,
        pooling_stat=cfg.pooling_stat, spike_mode=cfg.spike_mode, dvs_mode=cfg.dvs_mode, TET=False, model="sdt",
        lr=3e-4, opt="lamb", scale=[1.0, 1.0], data_dir="./data/DVSGesturedataset/", seed=42,
        **{"mlp-ratio": cfg.mlp_ratio}, **extra,
    )


def reference_state_dict(model):
    """The reference SpikeDrivenTransformer's state_dict (names, torch layouts) holding `model`'s weights,
    with the tensors the reference's forward never uses and BN's num_batches_tracked."""
    cfg = model.config
    P = jax.tree_util.tree_map(np.asarray, model.params)
    S = jax.tree_util.tree_map(np.asarray, model.batch_stats)["sdt"]
    rng = np.random.default_rng(7)
    sd = {}

    def put(name, array):
        sd[name] = torch.tensor(np.array(array, np.float32, order="C"))  # torch layout, C order as saved

    def conv_bn(torch_conv, torch_bn, p, s, bias=False):
        put(f"{torch_conv}.weight", p["conv"]["kernel"].transpose(3, 2, 0, 1))
        if bias:
            put(f"{torch_conv}.bias", p["conv"]["bias"])
        put(f"{torch_bn}.weight", p["bn"]["scale"])
        put(f"{torch_bn}.bias", p["bn"]["bias"])
        put(f"{torch_bn}.running_mean", s["bn"]["mean"])
        put(f"{torch_bn}.running_var", s["bn"]["var"])
        sd[f"{torch_bn}.num_batches_tracked"] = torch.tensor(1234)

    def lif(torch_name, parent, name):
        if cfg.spike_mode == "plif":
            put(f"{torch_name}.w", parent[name]["w"])

    stem, stem_s = P["sdt"]["patch_embed"], S["patch_embed"]
    for i, suffix in enumerate(("", "1", "2", "3")):
        conv_bn(f"patch_embed.proj_conv{suffix}", f"patch_embed.proj_bn{suffix}", stem[f"proj{i}"], stem_s[f"proj{i}"])
        lif(f"patch_embed.proj_lif{suffix}", stem, f"lif{i}")
    conv_bn("patch_embed.rpe_conv", "patch_embed.rpe_bn", stem["rpe"], stem_s["rpe"])
    if cfg.spike_mode == "plif":
        put("patch_embed.rpe_lif.w", rng.normal(size=()))  # unused by the reference's forward
    for j in range(cfg.num_layers):
        a, a_s = P["sdt"][f"block{j}_attn"], S[f"block{j}_attn"]
        for n in ("q", "k", "v"):
            conv_bn(f"block.{j}.attn.{n}_conv", f"block.{j}.attn.{n}_bn", a[n], a_s[n])
            lif(f"block.{j}.attn.{n}_lif", a, f"{n}_lif")
        conv_bn(f"block.{j}.attn.proj_conv", f"block.{j}.attn.proj_bn", a["proj"], a_s["proj"], bias=True)
        lif(f"block.{j}.attn.shortcut_lif", a, "shortcut_lif")
        lif(f"block.{j}.attn.talking_heads_lif", a, "talking_heads_lif")
        put(f"block.{j}.attn.talking_heads.weight", rng.normal(size=(cfg.num_heads, cfg.num_heads, 1)))  # unused
        if cfg.spike_mode == "plif":
            put(f"block.{j}.attn.attn_lif.w", rng.normal(size=()))  # unused
        m, m_s = P["sdt"][f"block{j}_mlp"], S[f"block{j}_mlp"]
        for n in ("1", "2"):
            conv_bn(f"block.{j}.mlp.fc{n}_conv", f"block.{j}.mlp.fc{n}_bn", m[f"fc{n}"], m_s[f"fc{n}"], bias=True)
            lif(f"block.{j}.mlp.fc{n}_lif", m, f"fc{n}_lif")
    lif("head_lif", P["sdt"], "head_lif")
    put("head.weight", P["classifier"]["kernel"].T)
    put("head.bias", P["classifier"]["bias"])
    return sd


def timm_checkpoint(path, sd, args):
    """What timm's CheckpointSaver.save_checkpoint writes (optimizer state included)."""
    optimizer = {"state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.zeros(2)}},
                 "param_groups": [{"lr": 3e-4, "betas": (0.9, 0.999), "weight_decay": 0.06, "params": [0]}]}
    torch.save({"epoch": 199, "arch": "spikedriventransformer", "state_dict": sd, "optimizer": optimizer,
                "version": 2, "args": args, "metric": 97.9}, path)
    return path


def raw_rows(seed=4):
    """Raw event rows (t, x, y, p, label) on the SIZE × SIZE camera, from random_tokens' streams."""
    return [{"t": t.astype(np.int64), "x": x.astype(np.int16), "y": y.astype(np.int16), "p": p.astype(np.int8),
             "label": b % 3} for b, (x, y, p, t) in enumerate(decoded_events(*random_tokens(seed)))]


@pytest.mark.parametrize("overrides", [dict(), dict(spike_mode="plif", dvs_mode=True, pooling_stat="1100")],
                         ids=["lif-gesture", "plif-dvs"])
def test_timm_checkpoint_converts_to_the_same_logits_from_raw_events(tmp_path, overrides, caplog):
    """CIFAR10-DVS (dvs_mode): the camera is larger than img_size and the model resizes the frames (a 2·SIZE
    camera here; the real one is 128 for img_size 64, camera_size's default for that dataset)."""
    camera = 2 * SIZE if overrides.get("dvs_mode") else SIZE
    model = source_model(camera=camera, **overrides)
    cfg = model.config
    dataset = "cifar10-dvs" if cfg.dvs_mode else "gesture"
    args = run_args(cfg, dataset=dataset)
    del args.dvs_mode  # older runs: derived from the dataset as train.py does
    path = timm_checkpoint(tmp_path / "model_best.pth.tar", reference_state_dict(model), args)
    options = {"camera_size": camera} if cfg.dvs_mode else {}
    with caplog.at_level("INFO"):
        folder = conv.convert_checkpoint(path, tmp_path / "converted", **options)
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors",
                                                         "tokenizer_config.json"]
    if cfg.spike_mode == "plif":
        assert "talking_heads.weight" in caplog.text and "attn_lif.w" in caplog.text and "rpe_lif.w" in caplog.text

    tokenizer = EventTokenizer.from_pretrained(folder)
    loaded = AutoModelForSequenceClassification.from_pretrained(folder)
    assert type(loaded) is FlaxSpikeDrivenTransformerForSequenceClassification
    assert tokenizer.sensor_size == (camera, camera, 2) and tokenizer.vocab_size == loaded.config.vocab_size
    for key in ("num_frames", "hidden_size", "num_layers", "num_heads", "mlp_ratio", "pooling_stat", "spike_mode",
                "dvs_mode", "num_labels", "split_by", "frame_size", "sensor_size"):
        assert getattr(loaded.config, key) == getattr(cfg, key), key
    for name in ("params", "batch_stats"):  # every tensor in place and in Flax's layout, bit for bit
        jax.tree_util.tree_map(np.testing.assert_array_equal, getattr(loaded, name), getattr(model, name))
    batch = EventCollator(tokenizer, pad_to_multiple_of=64)(raw_rows())
    want = model(batch["input_ids"], batch["timestamps"], batch["attention_mask"])
    got = loaded(batch["input_ids"], batch["timestamps"], batch["attention_mask"])
    np.testing.assert_array_equal(np.asarray(got.logits), np.asarray(want.logits))
    assert np.ptp(np.asarray(got.logits)) > 0
    card = (folder / "README.md").read_text()
    assert "model_best.pth.tar" in card and "epoch 199" in card and "library_name: eventlm" in card
    assert ("resize inside" in card) == cfg.dvs_mode  # CIFAR10-DVS frames were resized by the original loader
    if cfg.dvs_mode:  # the real dataset's default: the 128 × 128 camera, frames resized to img_size inside
        settings = conv.reference_settings(vars(run_args(cfg, dataset="cifar10-dvs", img_size=64)))
        assert settings["camera_size"] == 128
        assert conv.reference_sdt_config(settings, conv.reference_tokenizer(settings)).frame_size == [64, 64]
        with pytest.raises(ValueError, match="camera_size=100 is not a multiple of img_size=64"):
            conv.reference_settings(vars(run_args(cfg, dataset="cifar10-dvs", img_size=64)), options={"camera_size": 100})


def test_bare_state_dict_with_a_reference_config_and_options(tmp_path):
    model = source_model()
    cfg = model.config
    path = tmp_path / "weights.pth"
    torch.save({"module." + k: v for k, v in reference_state_dict(model).items()}, path)  # DDP prefix
    with pytest.raises(ValueError, match="carries no args"):
        conv.convert_checkpoint(path, tmp_path / "out")
    folder = conv.convert_checkpoint(
        path, tmp_path / "out", "gesture/2_256_200E_t16", img_size=SIZE, num_classes=cfg.num_labels,
        dim=cfg.hidden_size, layer=cfg.num_layers, num_heads=cfg.num_heads, mlp_ratio=cfg.mlp_ratio,
        time_steps=cfg.num_frames, pooling_stat=cfg.pooling_stat)
    loaded = AutoModelForSequenceClassification.from_pretrained(folder)
    assert loaded.config.id2label[0] == "hand_clapping" or loaded.config.num_labels != 11
    batch = EventCollator(EventTokenizer.from_pretrained(folder))(raw_rows(5))
    np.testing.assert_array_equal(np.asarray(loaded(**{k: batch[k] for k in ("input_ids", "timestamps",
                                                                             "attention_mask")}).logits),
                                  np.asarray(model(batch["input_ids"], batch["timestamps"],
                                                   batch["attention_mask"]).logits))
    assert conv.reference_settings(None, "gesture/2_256_200E_t16")["time_steps"] == 16
    with pytest.raises(ValueError, match="unknown setting"):
        conv.convert_checkpoint(path, tmp_path / "o2", "gesture/2_256_200E_t16", depth=2)


class Payload:  # an arbitrary object: weights_only must refuse it
    def __reduce__(self):
        return (os.getcwd, ())


def test_bad_checkpoints_give_clear_errors(tmp_path):
    model = source_model()
    cfg = model.config
    sd = reference_state_dict(model)
    good = timm_checkpoint(tmp_path / "good.pth.tar", sd, run_args(cfg))

    wide = argparse.Namespace(**{**vars(run_args(cfg)), "dim": 2 * cfg.hidden_size})  # settings of another size
    wrong_size = timm_checkpoint(tmp_path / "wide.pth.tar", sd, wide)
    with pytest.raises(ValueError, match=r"wide\.pth\.tar: .*has shape .* needs .*dim=32"):
        conv.convert_checkpoint(wrong_size, tmp_path / "o1")

    missing = dict(sd)
    del missing["block.1.mlp.fc2_bn.running_var"]
    with pytest.raises(ValueError, match=r"lacks 1 tensor\(s\).*block1_mlp\.fc2\.bn\.var"):
        conv.convert_checkpoint(timm_checkpoint(tmp_path / "missing.pth.tar", missing, run_args(cfg)), tmp_path / "o2")

    evil = tmp_path / "evil.pth.tar"
    torch.save({"state_dict": sd, "args": run_args(cfg), "payload": Payload()}, evil)
    with pytest.raises(ValueError, match=r"evil\.pth\.tar: refused by torch\.load\(weights_only=True\)"):
        conv.convert_checkpoint(evil, tmp_path / "o3")

    truncated = tmp_path / "truncated.pth.tar"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ValueError, match=r"truncated\.pth\.tar: .*(truncated or corrupt|refused)"):
        conv.convert_checkpoint(truncated, tmp_path / "o4")

    other = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(4, 3, 3, 3), "fc.weight": torch.zeros(2, 4)}, other)
    with pytest.raises(ValueError, match="not a Spike-Driven Transformer state_dict"):
        conv.convert_checkpoint(other, tmp_path / "o5")

    not_ckpt = tmp_path / "list.pth"
    torch.save([1, 2, 3], not_ckpt)
    with pytest.raises(ValueError, match="not a model checkpoint"):
        conv.convert_checkpoint(not_ckpt, tmp_path / "o6")

    plif = argparse.Namespace(**{**vars(run_args(cfg)), "spike_mode": "plif"})  # lif weights, plif settings
    with pytest.raises(ValueError, match=r"lacks .*_lif\.w"):
        conv.convert_checkpoint(timm_checkpoint(tmp_path / "plif.pth.tar", sd, plif), tmp_path / "o7")
    assert not any((tmp_path / f"o{i}").exists() for i in range(1, 8))  # nothing half-written


def test_cli(tmp_path, capsys):
    model = source_model()
    path = timm_checkpoint(tmp_path / "ckpt.pth.tar", reference_state_dict(model), run_args(model.config))
    assert cli.main(["convert-sdt-checkpoint", "--checkpoint", str(path), "--output_dir", str(tmp_path / "out"),
                     "--set", "num_heads=2"]) == 0
    assert "converted" in capsys.readouterr().out and (tmp_path / "out" / "model.safetensors").is_file()
    assert cli.main(["convert-sdt-checkpoint", "--checkpoint", str(tmp_path / "nope.pth"), "--output_dir",
                     str(tmp_path / "o2")]) == 2
    assert "is not a file" in capsys.readouterr().err


def test_gesture_head_is_put_in_label_order():
    """The reference's output k is DVS128 Gesture label [0, 1, 10, 2, ..., 9][k] (SpikingJelly's frame folders
    sorted as strings); the converted model's output j is label j."""
    rng = np.random.default_rng(0)
    head = {"kernel": rng.normal(size=(6, 11)).astype(np.float32), "bias": rng.normal(size=11).astype(np.float32)}
    x = rng.normal(size=(4, 6)).astype(np.float32)
    reference = x @ head["kernel"] + head["bias"]
    fixed = conv.gesture_head_in_label_order(head)
    converted = x @ fixed["kernel"] + fixed["bias"]
    for k, label in enumerate([0, 1, 10, 2, 3, 4, 5, 6, 7, 8, 9]):
        np.testing.assert_array_equal(converted[:, label], reference[:, k])
