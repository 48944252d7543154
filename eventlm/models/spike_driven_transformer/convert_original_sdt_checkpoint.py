"""Convert an original Spike-Driven Transformer checkpoint (Yao et al., NeurIPS 2023; the authors' code at
https://github.com/BICLab/Spike-Driven-Transformer) into an eventlm model folder.

    python -m eventlm.models.spike_driven_transformer.convert_original_sdt_checkpoint \\
        --checkpoint output/train/.../model_best.pth.tar --output_dir sdt-dvs-gesture
    eventlm convert-sdt-checkpoint --checkpoint state_dict.pth --reference_config gesture/2_256_200E_t16 ...

The reference's train.py saves with timm's CheckpointSaver: a torch.save'd dict with "state_dict" (maybe
"state_dict_ema"), "epoch", "arch", "optimizer", "version", "metric" and "args", the run's argparse.Namespace.
A bare state_dict is read too. The file is read only with torch.load(weights_only=True): torch's restricted
loader, which builds tensors, plain containers and numbers and nothing else; argparse.Namespace (the one
other type such checkpoints carry) is allow-listed for this call only. Any other object in the file is
refused before it is built (no arbitrary unpickling, never weights_only=False).

Settings, weakest first: `reference_config` (a yaml of the reference's conf/ folder, embedded below as
data), the checkpoint's args (what the run really used; train.py's defaults for keys an older run lacks),
then keyword options. As in train.py: dvs_mode is on only for the CIFAR10-DVS datasets, and the frames are
SpikingJelly's split by number into `time_steps` frames of the camera (camera_size × camera_size: 128 for
CIFAR10-DVS, whose loader resized the frames to img_size with torchvision's Resize; img_size otherwise).
The model does that resize itself (config.frame_size), so the tokenizer takes the camera's raw events.

    original state_dict                                       eventlm variables
    patch_embed.proj_conv{,1,2,3} / proj_bn{,1,2,3}           sdt.patch_embed.proj{0,1,2,3}.conv / .bn
    patch_embed.rpe_conv / rpe_bn                             sdt.patch_embed.rpe.conv / .bn
    patch_embed.proj_lif{,1,2,3}.w (PLIF)                     sdt.patch_embed.lif{0,1,2,3}.w
    block.J.attn.{q,k,v}_conv / _bn / _lif.w                  sdt.blockJ_attn.{q,k,v}.conv / .bn, {q,k,v}_lif.w
    block.J.attn.proj_conv / proj_bn                          sdt.blockJ_attn.proj.conv / .bn
    block.J.attn.{shortcut_lif,talking_heads_lif}.w           sdt.blockJ_attn.{shortcut_lif,talking_heads_lif}.w
    block.J.mlp.fc{1,2}_conv / _bn / _lif.w                   sdt.blockJ_mlp.fc{1,2}.conv / .bn, fc{1,2}_lif.w
    head_lif.w                                                sdt.head_lif.w
    head.weight (classes, D), head.bias                       classifier.kernel (D, classes), classifier.bias
  conv weight (out, in, kh, kw) → kernel (kh, kw, in, out); BatchNorm weight / bias → params scale / bias,
  running_mean / running_var → batch_stats mean / var (num_batches_tracked dropped). Never used by the
  reference's forward pass, so dropped (and logged): block.J.attn.talking_heads.weight, block.J.attn.attn_lif.w,
  patch_embed.rpe_lif.w.

The output folder holds config.json + model.safetensors, the camera's EventTokenizer (tokens p·W·H + y·W + x,
the flat index of SpikingJelly's (p, y, x) frame) and a README.md card saying what was converted.
"""

from __future__ import annotations

import argparse
import json
import logging
import pickle
import re
import sys
from pathlib import Path
from typing import Optional

import numpy as np

from ...conversion import expected_variable_shapes, num_parameters, params_digest, write_converted_model

logger = logging.getLogger(__name__)

REFERENCE_REPO = "https://github.com/BICLab/Spike-Driven-Transformer"
PAPER = "https://arxiv.org/abs/2307.01694"
TORCH_HINT = "pip install eventlm[torch]"

# ------------------------------------------------------------------------------------------------
# The reference's settings, as data (conf/<dataset>/<name>.yml: the model keys; spike_mode comes from the
# command line, --spike-mode lif in the README) and train.py's argparse defaults
# ------------------------------------------------------------------------------------------------

SETTING_KEYS = ("dataset", "img_size", "in_channels", "num_classes", "dim", "layer", "num_heads", "mlp_ratio",
                "time_steps", "pooling_stat", "spike_mode", "dvs_mode", "TET", "camera_size")
_GESTURE = dict(dataset="gesture", img_size=128, in_channels=2, num_classes=11, dim=256, layer=2, num_heads=8,
                mlp_ratio=4, pooling_stat="0111", spike_mode="lif", TET=False)
REFERENCE_CONFIGS = {
    "gesture/2_256_200E_t10": dict(_GESTURE, time_steps=10),
    "gesture/2_256_200E_t16": dict(_GESTURE, time_steps=16),
    "cifar10-dvs/2_256_200E_t10_TET": dict(dataset="cifar10-dvs", img_size=64, in_channels=2, num_classes=10,
                                           dim=256, layer=2, num_heads=8, mlp_ratio=4, time_steps=10,
                                           pooling_stat="0011", spike_mode="lif", TET=True),
}
TRAIN_DEFAULTS = dict(dataset="torch/cifar10", in_channels=3, num_classes=1000, layer=4, num_heads=8, mlp_ratio=4,
                      time_steps=4, pooling_stat="1111", spike_mode="lif", TET=False)
DVS_MODE_DATASETS = ("cifar10-dvs-tet", "cifar10-dvs")  # train.py: args.dvs_mode = dataset in these
# the camera behind a dataset whose loader resized its frames to img_size (train.py: SpikingJelly's CIFAR10DVS
# frames of the 128 × 128 DVS, then dvs_utils.Resize(64)); other datasets' frames are the camera's own
CAMERA_SIZES = {"cifar10-dvs": 128}
_DATASETS = {"gesture": "DVS128 Gesture", "cifar10-dvs": "CIFAR10-DVS", "cifar10-dvs-tet": "CIFAR10-DVS"}


def _torch():
    try:
        import torch
    except ImportError as err:
        raise ImportError("reading an original Spike-Driven Transformer checkpoint needs PyTorch (the CPU wheel "
                          f"is enough): {TORCH_HINT}") from err
    return torch


def reference_settings(args: Optional[dict] = None, reference_config: Optional[str] = None, options=None,
                       source: str = "checkpoint") -> dict:
    """The run's settings: reference_config < the checkpoint's args < options; checked (ValueError naming
    the setting)."""
    options = dict(options or {})
    unknown = sorted(set(options) - set(SETTING_KEYS))
    if unknown:
        raise ValueError(f"unknown setting(s) {unknown}; known settings: {list(SETTING_KEYS)}")
    settings = {}
    if reference_config is not None:
        if reference_config not in REFERENCE_CONFIGS:
            raise ValueError(f"unknown reference_config {reference_config!r}; choose one of {sorted(REFERENCE_CONFIGS)}")
        settings.update(REFERENCE_CONFIGS[reference_config])
    if args is not None:
        picked = {k: args[k] for k in SETTING_KEYS if k in args}
        if reference_config is not None:
            differ = {k: (settings[k], v) for k, v in picked.items() if k in settings and settings[k] != v}
            if differ:
                logger.info("%s: the run's args differ from %s in %s; the args win", source, reference_config, differ)
        settings.update({k: v for k, v in TRAIN_DEFAULTS.items() if k not in picked and k not in settings})
        settings.update(picked)
    settings.update(options)
    if "dvs_mode" not in settings and "dataset" in settings:
        settings["dvs_mode"] = settings["dataset"] in DVS_MODE_DATASETS
    settings.setdefault("TET", False)
    if "img_size" in settings and "camera_size" not in settings:
        settings["camera_size"] = CAMERA_SIZES.get(settings.get("dataset"), settings["img_size"])
    missing = [k for k in SETTING_KEYS if k not in settings]
    if missing:
        where = "its args lack them" if args is not None else "it carries no args (a bare state_dict)"
        raise ValueError(f"{source}: settings {missing} are unknown ({where}); pass reference_config (one of "
                         f"{sorted(REFERENCE_CONFIGS)}) or the values as options, e.g. dim=256")
    for key in ("img_size", "in_channels", "num_classes", "dim", "layer", "num_heads", "mlp_ratio", "time_steps",
                "camera_size"):
        value = settings[key]
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{source}: setting {key!r} must be a positive integer, got {value!r}")
        settings[key] = int(value)
    for key in ("dvs_mode", "TET"):
        if not isinstance(settings[key], bool):
            raise ValueError(f"{source}: setting {key!r} must be true or false, got {settings[key]!r}")
    if settings["spike_mode"] not in ("lif", "plif"):
        raise ValueError(f"{source}: spike_mode={settings['spike_mode']!r} is not supported; the reference builds "
                         "its neurons for 'lif' and 'plif' only")
    if settings["camera_size"] % settings["img_size"]:
        raise ValueError(f"{source}: camera_size={settings['camera_size']} is not a multiple of img_size="
                         f"{settings['img_size']}; the frames are resized by integer factors (set camera_size)")
    stat = settings["pooling_stat"]
    if not isinstance(stat, str) or len(stat) != 4 or set(stat) - {"0", "1"}:
        raise ValueError(f"{source}: pooling_stat must be four characters '0'/'1', got {stat!r}")
    return settings


# ------------------------------------------------------------------------------------------------
# Settings -> EventTokenizer and SpikeDrivenTransformerConfig
# ------------------------------------------------------------------------------------------------


def gesture_head_in_label_order(head: dict) -> dict:
    """The classifier with output j = DVS128 Gesture label j. The reference trains on SpikingJelly's frame
    folders, which torchvision's DatasetFolder orders as strings ("0", "1", "10", "2", ..., "9"), so its
    output k is label int(sorted names)[k]; eventlm's datasets (tonic's DVSGesture) use the labels as they are."""
    classes = head["kernel"].shape[-1]
    order = [int(name) for name in sorted(str(i) for i in range(classes))]  # reference output k → label order[k]
    inverse = np.argsort(order)  # label j → reference output inverse[j]
    return {"kernel": np.asarray(head["kernel"])[:, inverse], "bias": np.asarray(head["bias"])[inverse]}


def _class_names(settings: dict) -> Optional[dict]:
    """id2label for DVS128 Gesture from tonic's class list (SpikingJelly's label order), when it fits."""
    if settings["dataset"] != "gesture":
        return None
    try:
        import tonic.datasets

        names = list(tonic.datasets.DVSGesture.classes)
    except Exception:  # noqa: BLE001  (tonic is optional here; labels stay "LABEL_i")
        return None
    return {i: n for i, n in enumerate(names)} if len(names) == settings["num_classes"] else None


def reference_tokenizer(settings: dict):
    """EventTokenizer of the camera_size × camera_size camera with in_channels polarities (tokens p·W·H + y·W + x)."""
    from ...tokenization_events import EventTokenizer

    size = settings["camera_size"]
    return EventTokenizer(
        sensor_size=(size, size, settings["in_channels"]), name=f"sdt-{settings['dataset']}-{size}x{size}",
        description=(f"Events of a {size}x{size} camera as the original Spike-Driven Transformer read them: "
                     "SpikingJelly frames (p, y, x); token = p·W·H + y·W + x"),
        sensor_layout=dict(x="column", y="row", p="polarity (0 OFF, 1 ON): frame channel p"),
    )


def reference_sdt_config(settings: dict, tokenizer):
    """SpikeDrivenTransformerConfig computing what the reference model with `settings` computes."""
    from .configuration_spike_driven_transformer import SpikeDrivenTransformerConfig

    s = settings
    if s["dim"] % 8 or s["dim"] % s["num_heads"]:
        raise ValueError(f"dim={s['dim']} must be a multiple of 8 and of num_heads={s['num_heads']}")
    id2label = _class_names(s)
    config = SpikeDrivenTransformerConfig.for_sensor(
        tokenizer.sensor_size, num_frames=s["time_steps"], split_by="number", hidden_size=s["dim"],
        num_layers=s["layer"], num_heads=s["num_heads"], mlp_ratio=s["mlp_ratio"], pooling_stat=s["pooling_stat"],
        spike_mode=s["spike_mode"], dvs_mode=s["dvs_mode"], num_labels=s["num_classes"],
        **({"frame_size": [s["img_size"], s["img_size"]]} if s["camera_size"] != s["img_size"] else {}),
        **({"id2label": id2label} if id2label else {}),
    )
    if config.vocab_size != tokenizer.vocab_size:
        raise ValueError(f"the tokenizer's vocabulary ({tokenizer.vocab_size}) differs from the config's "
                         f"({config.vocab_size})")
    return config


# ------------------------------------------------------------------------------------------------
# Reading the checkpoint: torch.load(weights_only=True), argparse.Namespace allow-listed
# ------------------------------------------------------------------------------------------------


def read_checkpoint(checkpoint_path, use_ema: bool = False) -> tuple[dict, dict]:
    """({torch key: numpy array}, info) of a timm .pth.tar (or a bare state_dict); info holds path, args
    (a dict or None), epoch, arch, metric, which ("state_dict" | "state_dict_ema" | "bare")."""
    path = Path(checkpoint_path)
    if not path.is_file():
        raise ValueError(f"checkpoint {str(path)!r} is not a file")
    torch = _torch()
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(
            f"{path}: refused by torch.load(weights_only=True): it holds Python objects other than tensors, plain "
            f"data and argparse.Namespace, or it is not a PyTorch file ({first}). Only checkpoints as the "
            "reference's timm CheckpointSaver writes them (or a bare state_dict) are read; they are never unpickled "
            "with weights_only=False"
        ) from err
    except Exception as err:  # noqa: BLE001  (zip reader, EOF, ... : one message)
        raise ValueError(f"{path}: not a readable PyTorch checkpoint ({type(err).__name__}: {err}); is the file "
                         "truncated or corrupt?") from err
    info = dict(path=str(path), args=None, epoch=None, arch=None, metric=None, which="bare")
    if isinstance(obj, dict) and "state_dict" in obj:
        which = "state_dict_ema" if use_ema else "state_dict"
        if which not in obj:
            raise ValueError(f"{path}: use_ema=True but the checkpoint holds no 'state_dict_ema' (keys: "
                             f"{sorted(map(str, obj))})")
        state, info["which"] = obj[which], which
        args = obj.get("args")
        if isinstance(args, argparse.Namespace):
            args = vars(args)
        if args is not None and not isinstance(args, dict):
            raise ValueError(f"{path}: 'args' is a {type(args).__name__}, not the run's argparse.Namespace")
        info.update(args=args, epoch=obj.get("epoch"), arch=obj.get("arch"), metric=obj.get("metric"))
    elif isinstance(obj, dict) and obj and all(torch.is_tensor(v) for v in obj.values()):
        if use_ema:
            raise ValueError(f"{path}: use_ema=True but the file is a bare state_dict without EMA weights")
        state = obj
    else:
        what = f"a dict with keys {sorted(map(str, obj))[:10]}" if isinstance(obj, dict) else f"a {type(obj).__name__}"
        raise ValueError(f"{path}: not a model checkpoint: it holds {what}, neither timm's {{'state_dict': ..., "
                         "'args': ...}} nor a state_dict of tensors")
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise ValueError(f"{path}: {info['which']} is not a dict of tensors")
    arrays = {}
    for key, value in state.items():
        key = key[len("module."):] if key.startswith("module.") else key  # DataParallel / DDP prefix
        arrays[key] = value.detach().cpu().numpy() if value.dtype != torch.bfloat16 else \
            value.detach().float().cpu().numpy()
    if not any(k.startswith("patch_embed.proj_conv.") for k in arrays) or "head.weight" not in arrays:
        raise ValueError(f"{path}: not a Spike-Driven Transformer state_dict (arch {info['arch']!r}; it lacks "
                         f"patch_embed.proj_conv.weight / head.weight; first keys: {sorted(arrays)[:6]})")
    return arrays, info


# ------------------------------------------------------------------------------------------------
# Names and layouts
# ------------------------------------------------------------------------------------------------

_STEM = {"": "0", "1": "1", "2": "2", "3": "3"}
_UNUSED = re.compile(r"^(block\.\d+\.attn\.(talking_heads\.weight|attn_lif\..+)|patch_embed\.rpe_lif\..+)$")
_MODULES = [  # (pattern of the module path, eventlm module path, its kind)
    (r"patch_embed\.proj_(conv|bn)(\d?)", lambda m: f"sdt.patch_embed.proj{_STEM[m[2]]}", None),
    (r"patch_embed\.proj_lif(\d?)", lambda m: f"sdt.patch_embed.lif{_STEM[m[1]]}", "lif"),
    (r"patch_embed\.rpe_(conv|bn)", lambda m: "sdt.patch_embed.rpe", None),
    (r"block\.(\d+)\.attn\.(q|k|v|proj)_(conv|bn)", lambda m: f"sdt.block{m[1]}_attn.{m[2]}", None),
    (r"block\.(\d+)\.attn\.(q_lif|k_lif|v_lif|shortcut_lif|talking_heads_lif)",
     lambda m: f"sdt.block{m[1]}_attn.{m[2]}", "lif"),
    (r"block\.(\d+)\.mlp\.fc(1|2)_(conv|bn)", lambda m: f"sdt.block{m[1]}_mlp.fc{m[2]}", None),
    (r"block\.(\d+)\.mlp\.fc(1|2)_lif", lambda m: f"sdt.block{m[1]}_mlp.fc{m[2]}_lif", "lif"),
    (r"head_lif", lambda m: "sdt.head_lif", "lif"),
    (r"head", lambda m: "classifier", "head"),
]
_MODULES = [(re.compile(p + r"\.([A-Za-z_]+)$"), f, kind) for p, f, kind in _MODULES]
_LEAVES = {
    "conv": {"weight": ("params", "conv.kernel"), "bias": ("params", "conv.bias")},
    "bn": {"weight": ("params", "bn.scale"), "bias": ("params", "bn.bias"), "running_mean": ("batch_stats", "bn.mean"),
           "running_var": ("batch_stats", "bn.var")},
    "lif": {"w": ("params", "w")},
    "head": {"weight": ("params", "kernel"), "bias": ("params", "bias")},
}


def map_reference_key(key: str) -> Optional[str]:
    """The eventlm variable ("params.sdt...." / "batch_stats.sdt....") of a reference state_dict key; None
    when it has no place; "" for what is dropped (num_batches_tracked)."""
    for pattern, target, kind in _MODULES:
        m = pattern.match(key)
        if not m:
            continue
        leaf = m.groups()[-1]
        if kind is None:
            kind = "conv" if "conv" in m.groups() else "bn"
        if kind == "bn" and leaf == "num_batches_tracked":
            return ""
        if leaf not in _LEAVES[kind]:
            return None
        collection, name = _LEAVES[kind][leaf]
        return f"{collection}.{target(m)}.{name}"
    return None


def to_flax_layout(key: str, array: np.ndarray) -> np.ndarray:
    """conv (out, in, kh, kw) → (kh, kw, in, out); linear (classes, D) → (D, classes); others as they are."""
    if key.endswith(".conv.kernel") and array.ndim == 4:
        return array.transpose(2, 3, 1, 0)
    if key == "params.classifier.kernel" and array.ndim == 2:
        return array.T
    return array


def convert_state_dict(state: dict, config, source: str = "checkpoint") -> tuple[dict, list]:
    """(eventlm variables {"params", "batch_stats"} of float32 numpy arrays, dropped reference keys); every
    tensor is shape-checked and every variable of the eventlm model filled exactly once (ValueError naming the
    key, the shapes and the settings that decide them)."""
    from ...modeling_flax_utils import unflatten_variables

    expected = expected_variable_shapes(config)
    settings = (f"dim={config.hidden_size}, layer={config.num_layers}, mlp_ratio={config.mlp_ratio}, in_channels="
                f"{config.sensor_size[2]}, num_classes={config.num_labels}, spike_mode={config.spike_mode!r}")
    out, unused, unplaced = {}, [], []
    for ref_key, value in sorted(state.items()):
        if _UNUSED.match(ref_key):
            unused.append(ref_key)
            continue
        key = map_reference_key(ref_key)
        if key == "":
            continue
        if key is None or key not in expected:
            unplaced.append(ref_key)
            continue
        arr = np.asarray(value)
        if arr.dtype.kind != "f":
            raise ValueError(f"{source}: {ref_key} has dtype {arr.dtype}; expected floating-point weights")
        arr = to_flax_layout(key, arr.astype(np.float32))
        if tuple(arr.shape) != expected[key]:
            raise ValueError(f"{source}: {ref_key} has shape {tuple(value.shape)} but {key} of the eventlm model needs "
                             f"{expected[key]} (in eventlm's layout); the checkpoint does not fit the settings "
                             f"({settings})")
        out[key] = np.array(arr, order="C")  # the safetensors writer takes the raw buffer: C order only
    if unplaced:
        raise ValueError(f"{source}: {len(unplaced)} tensor(s) of the checkpoint have no place in a model with these "
                         f"settings ({settings}): {unplaced[:8]}{' ...' if len(unplaced) > 8 else ''}")
    missing = sorted(set(expected) - set(out))
    if missing:
        raise ValueError(f"{source}: the checkpoint lacks {len(missing)} tensor(s) the settings need ({settings}): "
                         f"{missing[:8]}{' ...' if len(missing) > 8 else ''}")
    nested = unflatten_variables(out)
    return {"params": nested["params"], "batch_stats": nested["batch_stats"]}, unused


# ------------------------------------------------------------------------------------------------
# Model card
# ------------------------------------------------------------------------------------------------

CARD_TEMPLATE = """---
{{ card_data }}
---

# {{ model_name }}

A **Spike-Driven Transformer** (Yao et al., NeurIPS 2023, [arXiv 2307.01694]({{ paper }})) for {{ dataset }}
classification, converted to eventlm from an original checkpoint of the authors' code.

## Where the weights come from

- Original code: [{{ repo }}]({{ repo }}){% if reference_config %}; settings of `conf/{{ reference_config }}.yml`{% endif %}
  {%- if from_args %}; settings read from the run's arguments stored in the checkpoint{% endif %}
  {%- if options %}; given at conversion: `{{ options }}`{% endif %}.
- Checkpoint: `{{ checkpoint_name }}` ({{ which }}{% if epoch is not none %}, epoch {{ epoch }}{% endif %}
  {%- if metric is not none %}, metric {{ metric }}{% endif %}), read with `torch.load(weights_only=True)`.
- Converted by `eventlm.models.spike_driven_transformer.convert_original_sdt_checkpoint` (eventlm {{ version }}).
  The weights are the original ones, unchanged (convolutions and the linear head transposed to Flax's layout),
  batch-norm running statistics included. SHA-256 of the converted tensors: `{{ digest }}`.
- Left out, because the original forward pass never uses them: {{ unused }}.
- The original authors' terms apply to the weights.

## It computes what the original code computed

Events become {{ T }} frames of {{ camera }}x{{ camera }} per sample inside the model, as SpikingJelly's
`integrate_events_by_fixed_frames_number(split_by="number")` builds them for the original training (frame
channel = polarity, pixel (y, x)); the tokenizer's tokens p·W·H + y·W + x are exactly those frame indices.
LIF neurons: τ = 2, threshold 1 (0.5 after K⊙V), spike where V ≥ threshold, hard reset to 0.
The logits are the mean over the {{ T }} frames of the linear head, as the original evaluation{% if tet %} (the run
trained with the TET loss on per-frame outputs){% endif %}.{% if resized %}
The original loader resized the {{ camera }}x{{ camera }} frames to {{ size }}x{{ size }} with torchvision's `Resize`
(bilinear, no antialiasing on tensors in the torchvision of its time); the model does the same resize inside
(`frame_size`), so the tokenizer takes the camera's raw {{ camera }}x{{ camera }} events.{% endif %}

## Use

```python
from eventlm import EventTokenizer, EventCollator, AutoModelForSequenceClassification

tokenizer = EventTokenizer.from_pretrained("{{ repo_id }}")
model = AutoModelForSequenceClassification.from_pretrained("{{ repo_id }}")
batch = EventCollator(tokenizer)(rows)          # rows: {"t", "x", "y", "p"} raw events
logits = model(batch["input_ids"], batch["timestamps"], batch["attention_mask"]).logits
```

## Settings

| original setting | value |
|---|---|
{% for key, value in settings %}| {{ key }} | {{ value }} |
{% endfor %}
"""


def build_conversion_card(*, model_name, settings, info, reference_config, options, digest, unused):
    from huggingface_hub import ModelCard, ModelCardData

    from ... import __version__

    data = ModelCardData(library_name="eventlm", tags=["spike-driven-transformer", "spiking-neural-network",
                                                         "neuromorphic", "event-camera", "dvs", "converted-checkpoint"])
    kinds = sorted({re.sub(r"^block\.\d+\.", "block.J.", k) for k in unused})
    metric = info["metric"]
    return ModelCard.from_template(
        data, template_str=CARD_TEMPLATE, model_name=model_name, repo_id=model_name, paper=PAPER, repo=REFERENCE_REPO,
        dataset=_DATASETS.get(settings["dataset"], settings["dataset"]), reference_config=reference_config,
        from_args=info["args"] is not None, options=json.dumps(options, sort_keys=True) if options else "",
        checkpoint_name=Path(info["path"]).name, which=info["which"], epoch=info["epoch"],
        metric=None if metric is None else float(metric), version=__version__, digest=digest,
        unused=", ".join(f"`{k}`" for k in kinds) or "nothing", T=settings["time_steps"], size=settings["img_size"],
        tet=settings["TET"], resized=settings["camera_size"] != settings["img_size"], camera=settings["camera_size"],
        settings=sorted(settings.items()),
    )


# ------------------------------------------------------------------------------------------------
# The conversion
# ------------------------------------------------------------------------------------------------


def convert_checkpoint(checkpoint_path, output_dir, reference_config: Optional[str] = None, *, use_ema: bool = False,
                       push_to_hub: bool = False, hub_model_id: Optional[str] = None, token: Optional[str] = None,
                       private: Optional[bool] = None, **options) -> Path:
    """Convert the original checkpoint at `checkpoint_path` into the eventlm folder `output_dir` (config.json,
    model.safetensors, tokenizer_config.json, README.md), written atomically. Settings: `reference_config`
    (e.g. "gesture/2_256_200E_t16") < the checkpoint's args < `options` (dim=..., time_steps=..., see
    SETTING_KEYS). use_ema converts "state_dict_ema". Returns the output folder."""
    state, info = read_checkpoint(checkpoint_path, use_ema=use_ema)
    settings = reference_settings(info["args"], reference_config, options, source=info["path"])
    tokenizer = reference_tokenizer(settings)
    config = reference_sdt_config(settings, tokenizer)
    variables, unused = convert_state_dict(state, config, source=info["path"])
    if settings["dataset"] == "gesture":
        variables["params"]["classifier"] = gesture_head_in_label_order(variables["params"]["classifier"])
    output_dir = Path(output_dir)
    model_name = hub_model_id or output_dir.resolve().name
    card = build_conversion_card(model_name=model_name, settings=settings, info=info, reference_config=reference_config,
                                 options=options, digest=params_digest(variables), unused=unused)
    folder = write_converted_model(config, variables, tokenizer, card, output_dir, push_to_hub=push_to_hub,
                                   hub_model_id=hub_model_id, token=token, private=private,
                                   commit_message="Convert original Spike-Driven Transformer checkpoint")
    if unused:
        logger.info("dropped %d tensor(s) the original forward pass never uses: %s", len(unused), ", ".join(unused))
    logger.info("converted %s (%s, epoch %s) into %s: %d parameters", info["path"], info["which"], info["epoch"],
                folder, num_parameters(variables))
    return folder


# ------------------------------------------------------------------------------------------------
# Command line (also `eventlm convert-sdt-checkpoint`)
# ------------------------------------------------------------------------------------------------


def _parse_option(text: str):
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--set takes KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    try:
        value = json.loads(value)
    except json.JSONDecodeError:
        pass  # a plain string (pooling_stat=0111 parses as a number: quote it, or it is restored below)
    return key.strip(), value


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--checkpoint", required=True,
                        help="the original checkpoint: timm's .pth.tar (with the run's args) or a bare state_dict")
    parser.add_argument("--output_dir", required=True, help="the eventlm model folder to write")
    parser.add_argument("--reference_config", default=None, choices=sorted(REFERENCE_CONFIGS),
                        help="the reference's conf/<name>.yml (needed when the checkpoint carries no args)")
    parser.add_argument("--set", dest="options", action="append", type=_parse_option, default=[], metavar="KEY=VALUE",
                        help=f"override a setting (repeatable): one of {', '.join(SETTING_KEYS)}")
    parser.add_argument("--use_ema", action="store_true", help="convert the EMA weights (state_dict_ema)")
    parser.add_argument("--push_to_hub", action="store_true", help="upload the folder to the Hub afterwards")
    parser.add_argument("--hub_model_id", default=None, help="Hub repo id (default: the output folder's name)")
    parser.add_argument("--private", action="store_true", default=None, help="create the Hub repo private")
    return parser


def main(argv=None) -> int:
    parser = add_arguments(argparse.ArgumentParser(
        prog="eventlm convert-sdt-checkpoint",
        description="Convert an original Spike-Driven Transformer checkpoint (BICLab) into an eventlm model folder.",
    ))
    args = parser.parse_args(argv)
    options = dict(args.options)
    if "pooling_stat" in options and not isinstance(options["pooling_stat"], str):
        options["pooling_stat"] = str(options["pooling_stat"]).zfill(4)  # 0111 read as the number 111
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        folder = convert_checkpoint(args.checkpoint, args.output_dir, args.reference_config, use_ema=args.use_ema,
                                    push_to_hub=args.push_to_hub, hub_model_id=args.hub_model_id, private=args.private,
                                    **options)
    except (ValueError, ImportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"converted {args.checkpoint} into {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
