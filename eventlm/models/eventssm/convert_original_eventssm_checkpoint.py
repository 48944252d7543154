"""Convert an original EventSSM checkpoint (Schöne et al. 2024, arXiv 2404.18508; the authors' code at
https://github.com/Efficient-Scalable-Machine-Learning/event-ssm) into an eventlm model folder.

    python -m eventlm.models.eventssm.convert_original_eventssm_checkpoint \\
        --checkpoint_dir logs/shd/checkpoints --reference_config shd/medium --output_dir eventssm-shd-medium

The reference trainer saves its TrainState with `flax.training.checkpoints`: with recent Flax an orbax
PyTree folder `checkpoint_<step>/`, with older Flax a single msgpack file `checkpoint_<step>`. Both are read
as raw arrays (orbax restores without a target into numpy; msgpack through flax.serialization.msgpack_restore),
never unpickling anything. `--checkpoint_dir` may be that folder or file, the `checkpoints/` folder holding
them (the newest step is taken) or the run's log folder around it.

The reference's settings are those of its model yaml (configs/model/<reference_config>.yaml) plus what its
data module implies (num_embeddings, num_classes, the sensor); they are embedded below as data and
`--config_json` (JSON, or the run's Hydra config.yaml) overrides them. They become an EventSSMConfig with the
reference conventions switched on:

    reference                                  eventlm
    gap after each event, last event dropped   gap_convention="after" (the model drops the last event)
    pooling keeps a window's first event       pooling_keep="first"
    only complete windows are read out,        readout_convention="reference"
      timepool divides by the whole duration
    DVS tokens x·y + W·H·p                     EventTokenizer(token_layout="reference-dvs")
    audio tokens = channel                     EventTokenizer (default layout)
    timesteps / 1000 (ms)                      time_unit_us=1000

and the parameters move, with a shape check for each, as

    params/encoder/encoder/embedding                                 params/eventssm/embed/embedding
        (rows for the pad/bos/eos tokens are appended as zeros; a classifier never reads them)
    params/encoder/stages_S/SequenceLayer_L/{LayerNorm_0|BatchNorm_0}   params/eventssm/stageS_blockL/norm
    params/encoder/stages_S/SequenceLayer_L/S5SSM_0/*                 params/eventssm/stageS_blockL/ssm/*
        (log_step (P, 1) becomes (P,))
    params/encoder/stages_S/SequenceLayer_L/Dense_0                   params/eventssm/stageS_blockL/gate
    params/encoder/stages_S/SequenceLayer_L/Dense_1                   params/eventssm/stageS_blockL/skip_proj
    params/decoder                                                    params/classifier
    model_state/batch_stats/encoder/stages_S/SequenceLayer_L/BatchNorm_0/{mean,var}
                                                                      batch_stats/eventssm/stageS_blockL/norm

The output folder holds config.json + model.safetensors (save_pretrained), tokenizer_config.json and a
README.md model card that says where the weights came from.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import re
import sys
import warnings
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ...conversion import expected_variable_shapes, num_parameters, params_digest, write_converted_model

logger = logging.getLogger(__name__)

REFERENCE_REPO = "https://github.com/Efficient-Scalable-Machine-Learning/event-ssm"
PAPER = "https://arxiv.org/abs/2404.18508"

# ------------------------------------------------------------------------------------------------
# The reference's settings, as data: configs/model/<name>.yaml (model.ssm_init + model.ssm) and what its
# data module gives the model (num_embeddings, num_classes) and the tokenizer (sensor, downsampling)
# ------------------------------------------------------------------------------------------------

_AUDIO = dict(num_embeddings=700, sensor_size=(700, 1, 1), downsampling=1)
_DVS = dict(num_embeddings=128 * 128 * 2, sensor_size=(128, 128, 2), downsampling=1, num_classes=11)
_COMMON = dict(C_init="lecun_normal", discretization="async", prenorm=True, bn_momentum=0.95, step_rescale=1.0,
               pooling_every_n_layers=1)
REFERENCE_CONFIGS = {
    "shd/medium": dict(
        _COMMON, **_AUDIO, num_classes=20, dt_min=0.004, dt_max=0.1, conj_sym=False, clip_eigs=False, d_model=96,
        d_ssm=128, ssm_block_size=8, num_stages=2, num_layers_per_stage=3, dropout=0.23, classification_mode="pool",
        batchnorm=False, pooling_stride=8, pooling_mode="avgpool", state_expansion_factor=1,
    ),
    "shd/tiny": dict(
        _COMMON, **_AUDIO, num_classes=20, dt_min=0.004, dt_max=0.1, conj_sym=False, clip_eigs=False, d_model=16,
        d_ssm=16, ssm_block_size=8, num_stages=1, num_layers_per_stage=6, dropout=0.1, classification_mode="timepool",
        batchnorm=False, pooling_stride=32, pooling_mode="timepool", state_expansion_factor=1,
    ),
    "ssc/medium": dict(
        _COMMON, **_AUDIO, num_classes=35, dt_min=0.0015, dt_max=0.1, conj_sym=True, clip_eigs=False, d_model=96,
        d_ssm=128, ssm_block_size=16, num_stages=2, num_layers_per_stage=3, dropout=0.23, classification_mode="pool",
        batchnorm=True, pooling_stride=8, pooling_mode="avgpool", state_expansion_factor=2,
    ),
    "ssc/small": dict(
        _COMMON, **_AUDIO, num_classes=35, dt_min=0.002, dt_max=0.1, conj_sym=True, clip_eigs=False, d_model=64,
        d_ssm=64, ssm_block_size=8, num_stages=1, num_layers_per_stage=6, dropout=0.27, classification_mode="timepool",
        batchnorm=True, pooling_stride=8, pooling_mode="timepool", state_expansion_factor=1,
    ),
    "dvs/small": dict(
        _COMMON, **_DVS, dt_min=0.001, dt_max=0.1, conj_sym=False, clip_eigs=True, d_model=128, d_ssm=128,
        ssm_block_size=16, num_stages=2, num_layers_per_stage=3, dropout=0.25, classification_mode="timepool",
        batchnorm=False, pooling_stride=16, pooling_mode="timepool", state_expansion_factor=2,
    ),
}
_DATASETS = {"shd": "Spiking Heidelberg Digits (SHD)", "ssc": "Spiking Speech Commands (SSC)",
             "dvs": "DVS128 Gesture"}
_POOLING = {"last": "last", "avgpool": "avg", "timepool": "timepool"}
_READOUT = {"pool": "mean", "timepool": "timepool"}
_SETTING_KEYS = sorted(REFERENCE_CONFIGS["shd/medium"])


def _check_setting_types(settings: dict, source: str) -> None:
    """ValueError naming the setting when a value has the wrong kind (int where an int belongs, ...)."""
    ints = ("d_model", "d_ssm", "ssm_block_size", "num_stages", "num_layers_per_stage", "pooling_stride",
            "state_expansion_factor", "num_embeddings", "num_classes", "downsampling", "pooling_every_n_layers")
    for key in ints:
        value = settings[key]
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{source}: reference setting {key!r} must be a positive integer, got {value!r}")
    for key in ("conj_sym", "clip_eigs", "prenorm", "batchnorm"):
        if not isinstance(settings[key], bool):
            raise ValueError(f"{source}: reference setting {key!r} must be true or false, got {settings[key]!r}")
    for key in ("dt_min", "dt_max", "bn_momentum", "step_rescale", "dropout"):
        if isinstance(settings[key], bool) or not isinstance(settings[key], (int, float)):
            raise ValueError(f"{source}: reference setting {key!r} must be a number, got {settings[key]!r}")
    size = settings["sensor_size"]
    if not isinstance(size, (list, tuple)) or len(size) != 3 or not all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1 for v in size
    ):
        raise ValueError(f"{source}: reference setting 'sensor_size' must be three positive integers, got {size!r}")


def flatten_override_dict(overrides: dict, source: str = "config overrides") -> dict:
    """Reference settings from a flat dict ({"num_classes": 10, "d_model": 64}) or one shaped like the
    reference's Hydra config ({"model": {"ssm_init": {...}, "ssm": {...}}, "training": {"downsampling": 2}});
    unknown keys raise ValueError listing the known ones."""
    if not isinstance(overrides, dict):
        raise ValueError(f"{source}: overrides must be a JSON object (a dict), got {type(overrides).__name__}")
    flat = {}
    if "model" in overrides and isinstance(overrides["model"], dict):  # a Hydra config.yaml of a reference run
        model = overrides["model"]
        for section in ("ssm_init", "ssm"):
            flat.update(model.get(section) or {})
        training = overrides.get("training") or {}
        if "downsampling" in training:
            flat["downsampling"] = training["downsampling"]
        return flat
    for key, value in overrides.items():
        if key in ("ssm_init", "ssm") and isinstance(value, dict):
            flat.update(value)
        else:
            flat[key] = value
    return flat


def reference_settings(reference_config: str, overrides: Optional[dict] = None, source: str = "config overrides") -> dict:
    """The reference's settings for `reference_config` ("shd/medium" | "shd/tiny" | "ssc/medium" | "ssc/small"
    | "dvs/small"), with `overrides` (flat or Hydra-shaped, see flatten_override_dict) applied and checked."""
    if reference_config not in REFERENCE_CONFIGS:
        raise ValueError(f"unknown reference_config {reference_config!r}; choose one of {sorted(REFERENCE_CONFIGS)}")
    settings = copy.deepcopy(REFERENCE_CONFIGS[reference_config])
    flat = flatten_override_dict(overrides or {}, source)
    unknown = sorted(set(flat) - set(settings))
    if unknown:
        raise ValueError(f"{source}: unknown reference setting(s) {unknown}; known settings: {_SETTING_KEYS}")
    audio = settings["sensor_size"][1] == 1
    if audio and "num_embeddings" in flat and "sensor_size" not in flat:  # audio: one channel per embedding row
        settings["sensor_size"] = (int(flat["num_embeddings"]), 1, 1)
    if not audio and ("sensor_size" in flat or "downsampling" in flat) and "num_embeddings" not in flat:
        settings.pop("num_embeddings")  # a camera's rows follow from its sensor and downsampling (below)
    settings.update(flat)
    if isinstance(settings["sensor_size"], list):
        settings["sensor_size"] = tuple(settings["sensor_size"])
    if "num_embeddings" not in settings:
        W, H, P = settings["sensor_size"]
        d = settings["downsampling"]
        settings["num_embeddings"] = (W // d) * (H // d) * P
    _check_setting_types(settings, source)
    return settings


def load_config_file(path) -> dict:
    """Overrides from a JSON file (or a YAML file such as the reference run's Hydra config.yaml)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"--config_json {str(path)!r} is not a file")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)  # plain data only, never constructs Python objects
        else:
            data = json.loads(text)
    except Exception as err:  # noqa: BLE001  (json and yaml raise different types; one message for both)
        raise ValueError(f"{path}: not valid {'YAML' if path.suffix in ('.yaml', '.yml') else 'JSON'} ({err})") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path}: must hold an object of reference settings, got {type(data).__name__}")
    return data


# ------------------------------------------------------------------------------------------------
# Settings -> EventTokenizer and EventSSMConfig
# ------------------------------------------------------------------------------------------------


def reference_tokenizer(settings: dict, name: Optional[str] = None):
    """The EventTokenizer that gives the reference's tokens: audio channels (x) for a one-row sensor, the
    reference's x'·y' + W'·H'·p for a camera (x' = x // downsampling, as tonic's Downsample by a power of 2)."""
    from ...tokenization_events import EventTokenizer

    W, H, P = settings["sensor_size"]
    d = settings["downsampling"]
    camera = H > 1
    if camera:
        if P != 2:
            raise ValueError(f"a camera sensor for the reference's DVS tokens needs 2 polarities, got sensor_size {(W, H, P)}")
        if d & (d - 1) or W % d or H % d:  # tonic's Downsample scales by (W // d) / W; it equals x // d only then
            raise ValueError(
                f"downsampling={d}: only powers of two that divide the sensor ({W}x{H}) reproduce tonic's Downsample "
                "exactly (x * (W // d) / W == x // d)"
            )
        layout = dict(x="column", y="row", p="polarity (0 OFF, 1 ON)")
        description = (f"Tokens of the original EventSSM code for a {W}x{H} camera (downsampling {d}): "
                       "token = x'·y' + W'·H'·p (the reference layout; x·y collides, so ids cannot be decoded)")
    else:
        if d != 1:
            raise ValueError(f"downsampling={d} applies to cameras only; the audio sensor {(W, H, P)} uses 1")
        layout = dict(x="channel", y="always 0", p="ignored (one polarity)")
        description = f"Tokens of the original EventSSM code for a {W}-channel audio sensor: token = channel"
    tok = EventTokenizer(
        sensor_size=(W, H, P), downsample=(d, d) if camera else (1, 1), token_layout="reference-dvs" if camera else "unique",
        name=name, description=description, sensor_layout=layout,
    )
    if tok.num_channels != settings["num_embeddings"]:
        raise ValueError(
            f"num_embeddings={settings['num_embeddings']} does not fit the sensor {(W, H, P)} with downsampling {d}: "
            f"the reference's tokens of that sensor need {tok.num_channels} embedding rows. Set num_embeddings, "
            "sensor_size and downsampling consistently in --config_json"
        )
    return tok


def reference_eventssm_config(settings: dict, tokenizer, id2label: Optional[dict] = None):
    """EventSSMConfig computing what the reference model with `settings` computes (conventions switched on)."""
    from .configuration_eventssm import EventSSMConfig

    s = settings
    if not s["prenorm"]:
        raise ValueError("prenorm=false (post-norm blocks) is not supported by eventlm's EventSSM, which is pre-norm")
    if s["classification_mode"] not in _READOUT:
        raise ValueError(
            f"classification_mode={s['classification_mode']!r} is not supported: the reference's 'last' reads the "
            "last position of the padded batch, so its result depends on the padding; supported: 'pool', 'timepool'"
        )
    if s["pooling_mode"] not in _POOLING:
        raise ValueError(f"pooling_mode={s['pooling_mode']!r} is not one of the reference's {sorted(_POOLING)}")
    if s["discretization"] not in ("zoh", "dirac", "async"):
        raise ValueError(f"discretization={s['discretization']!r} is not one of 'zoh', 'dirac', 'async'")
    if s["d_ssm"] % s["ssm_block_size"]:
        raise ValueError(f"d_ssm={s['d_ssm']} must be a multiple of ssm_block_size={s['ssm_block_size']}")
    f = s["state_expansion_factor"]
    if s["num_stages"] > 2 and f != 1:  # the reference's widths are then d, f·d, f·d, ... (not geometric)
        raise ValueError(
            f"num_stages={s['num_stages']} with state_expansion_factor={f}: the reference widens only the second "
            "stage, which eventlm's geometric widths cannot express (and its fourth stage cannot run)"
        )
    return EventSSMConfig(
        vocab_size=tokenizer.vocab_size, pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, num_labels=s["num_classes"],
        hidden_size=s["d_model"], state_size=s["d_ssm"], num_ssm_blocks=s["d_ssm"] // s["ssm_block_size"],
        num_stages=s["num_stages"], num_layers_per_stage=s["num_layers_per_stage"], pooling_stride=s["pooling_stride"],
        pooling_mode=_POOLING[s["pooling_mode"]], state_expansion_factor=f, hidden_expansion_factor=f,
        discretization=s["discretization"], conj_sym=s["conj_sym"], clip_eigs=s["clip_eigs"],
        dt_min=float(s["dt_min"]), dt_max=float(s["dt_max"]), step_rescale=float(s["step_rescale"]),
        time_unit_us=1000.0,  # the reference divides µs gaps by 1000
        norm="batch" if s["batchnorm"] else "layer", batchnorm_momentum=float(s["bn_momentum"]),
        layer_norm_eps=1e-6, batchnorm_eps=1e-5,  # flax LayerNorm / BatchNorm defaults the reference uses
        dropout=float(s["dropout"]), classifier_pooling=_READOUT[s["classification_mode"]],
        gap_convention="after", pooling_keep="first", readout_convention="reference", timepool_eps=1e-6,
        **({"id2label": id2label} if id2label else {}),
    )


def _class_names(reference_config: str, num_classes: int) -> Optional[dict]:
    """id2label for DVS128 Gesture from tonic's class list (the reference's label order), when it fits."""
    if not reference_config.startswith("dvs"):
        return None
    try:
        import tonic.datasets

        names = list(tonic.datasets.DVSGesture.classes)
    except Exception:  # noqa: BLE001  (tonic is optional here; labels stay "LABEL_i")
        return None
    return {i: n for i, n in enumerate(names)} if len(names) == num_classes else None


# ------------------------------------------------------------------------------------------------
# Reading the checkpoint: orbax folder or msgpack file, raw arrays, no pickle
# ------------------------------------------------------------------------------------------------

_ORBAX_MARKERS = ("_METADATA", "manifest.ocdbt", "checkpoint", "_CHECKPOINT_METADATA")
_STEP = re.compile(r"^checkpoint_(\d+)$")


def _is_orbax_folder(path: Path) -> bool:
    return path.is_dir() and any((path / m).exists() for m in _ORBAX_MARKERS)


def find_checkpoint(checkpoint_dir) -> tuple[Path, str]:
    """(path, "orbax" | "msgpack") of the checkpoint in `checkpoint_dir`: that orbax folder or msgpack file
    itself, else the newest checkpoint_<step> in it (or in its checkpoints/ subfolder)."""
    path = Path(checkpoint_dir)
    if not path.exists():
        raise ValueError(f"checkpoint_dir {str(path)!r} does not exist")
    if path.is_file():
        return path, "msgpack"
    if _is_orbax_folder(path):
        return path, "orbax"
    for folder in (path, path / "checkpoints"):
        if not folder.is_dir():
            continue
        steps = sorted(((int(m.group(1)), p) for p in folder.iterdir() if (m := _STEP.match(p.name))), key=lambda x: x[0])
        if steps:
            step, newest = steps[-1]
            if len(steps) > 1:
                logger.info("%s holds %d checkpoints; converting the newest, step %d", folder, len(steps), step)
            if newest.is_file():
                return newest, "msgpack"
            if _is_orbax_folder(newest):
                return newest, "orbax"
            raise ValueError(f"{newest} is a folder but not an orbax checkpoint (no {' / '.join(_ORBAX_MARKERS)} in it)")
    found = sorted(p.name for p in path.iterdir())[:20]
    raise ValueError(
        f"{str(path)!r} holds no EventSSM checkpoint: expected a checkpoint written by flax.training.checkpoints "
        f"(an orbax folder with _METADATA / manifest.ocdbt, a msgpack file, or a folder of checkpoint_<step> "
        f"entries); found {found}"
    )


def _read_orbax(path: Path) -> dict:
    import jax
    import orbax.checkpoint as ocp

    checkpointer = ocp.PyTreeCheckpointer()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # orbax warns about sharding files it does not need for numpy arrays
        try:
            meta = checkpointer.metadata(path)
            tree = getattr(meta, "item_metadata", meta)
            tree = getattr(tree, "tree", tree)
            # numpy on the host, whatever devices wrote it (a GPU run's checkpoint restores on a CPU)
            restore_args = jax.tree_util.tree_map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
            return checkpointer.restore(path, restore_args=restore_args)
        except Exception as err:  # noqa: BLE001  (orbax raises many types; the user needs one clear message)
            raise ValueError(f"could not read the orbax checkpoint {path}: {type(err).__name__}: {err}") from err


def _read_msgpack(path: Path) -> Any:
    from flax import serialization

    try:
        return serialization.msgpack_restore(path.read_bytes())  # msgpack with numpy ext types; no pickle
    except Exception as err:  # noqa: BLE001  (msgpack raises several types for a foreign file)
        raise ValueError(
            f"{path} is not a msgpack checkpoint written by flax.training.checkpoints ({type(err).__name__}: {err})"
        ) from err


def read_checkpoint(checkpoint_dir) -> tuple[dict, dict]:
    """(variables, info): variables = {"params": ..., "batch_stats": ... (when present)} as nested dicts of
    numpy arrays; info = {"path", "format", "step"}. ValueError when the path holds no reference checkpoint."""
    path, fmt = find_checkpoint(checkpoint_dir)
    state = _read_orbax(path) if fmt == "orbax" else _read_msgpack(path)
    if not isinstance(state, dict) or not isinstance(state.get("params"), dict):
        keys = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise ValueError(
            f"{path} ({fmt}) is not an EventSSM training checkpoint: it has no 'params' tree (top level: {keys})"
        )
    model_state = state.get("model_state") if isinstance(state.get("model_state"), dict) else {}
    batch_stats = model_state.get("batch_stats") or state.get("batch_stats") or {}
    variables = {"params": state["params"]}
    if batch_stats:
        variables["batch_stats"] = batch_stats
    step = state.get("step")
    info = dict(path=str(path), format=fmt, step=None if step is None else int(np.asarray(step)))
    return variables, info


# ------------------------------------------------------------------------------------------------
# Parameter mapping with shape checks
# ------------------------------------------------------------------------------------------------

_LAYER = r"encoder/stages_(\d+)/SequenceLayer_(\d+)"
_RULES = [  # (reference path regex, eventlm key template, settings that decide the shape)
    (r"params/encoder/encoder/embedding", "params.eventssm.embed.embedding", "num_embeddings, d_model"),
    (rf"params/{_LAYER}/(LayerNorm|BatchNorm)_0/(scale|bias)", "params.eventssm.stage{0}_block{1}.norm.{3}",
     "d_model, state_expansion_factor, batchnorm"),
    (rf"params/{_LAYER}/S5SSM_0/(Lambda_re|Lambda_im|B|C|D|log_step)", "params.eventssm.stage{0}_block{1}.ssm.{2}",
     "d_model, d_ssm, ssm_block_size, conj_sym, state_expansion_factor"),
    (rf"params/{_LAYER}/Dense_0/(kernel|bias)", "params.eventssm.stage{0}_block{1}.gate.{2}",
     "d_model, state_expansion_factor"),
    (rf"params/{_LAYER}/Dense_1/(kernel|bias)", "params.eventssm.stage{0}_block{1}.skip_proj.{2}",
     "d_model, state_expansion_factor"),
    (r"params/decoder/(kernel|bias)", "params.classifier.{0}", "num_classes, d_model, state_expansion_factor"),
    (rf"batch_stats/{_LAYER}/BatchNorm_0/(mean|var)", "batch_stats.eventssm.stage{0}_block{1}.norm.{2}",
     "d_model, state_expansion_factor, batchnorm"),
]
_RULES = [(re.compile(p + "$"), t, h) for p, t, h in _RULES]


def map_reference_key(ref_key: str) -> Optional[tuple[str, str]]:
    """(eventlm key, settings hint) of a reference variable path "params/encoder/...", or None."""
    for pattern, template, hint in _RULES:
        m = pattern.match(ref_key)
        if m:
            return template.format(*m.groups()), hint
    return None


def _flatten(tree: dict, prefix: str) -> dict:
    from flax.traverse_util import flatten_dict

    return {prefix + "/" + "/".join(map(str, k)): v for k, v in flatten_dict(tree).items()}


def convert_variables(reference_variables: dict, config, source: str = "checkpoint") -> dict:
    """eventlm variables {"params": ..., "batch_stats": ...} (nested dicts of float32 numpy arrays) from the
    reference's {"params", "batch_stats"}; every tensor is shape-checked and every slot of the eventlm model
    must be filled exactly once (ValueError naming the key, the shapes and the settings that decide them)."""
    from ...modeling_flax_utils import unflatten_variables

    expected = expected_variable_shapes(config)
    flat = _flatten(reference_variables.get("params", {}), "params")
    flat.update(_flatten(reference_variables.get("batch_stats", {}), "batch_stats"))
    out, unmapped = {}, []
    norm_kind = "BatchNorm_0" if config.norm == "batch" else "LayerNorm_0"
    for ref_key, value in sorted(flat.items()):
        mapped = map_reference_key(ref_key)
        if mapped is None or ("Norm_0/" in ref_key and f"/{norm_kind}/" not in ref_key):
            unmapped.append(ref_key)
            continue
        key, hint = mapped
        arr = np.asarray(value)
        if arr.dtype.kind != "f":
            raise ValueError(f"{source}: {ref_key} has dtype {arr.dtype}; expected floating-point weights")
        arr = arr.astype(np.float32)
        want = expected.get(key)
        if want is None:
            unmapped.append(ref_key)
            continue
        if key.endswith(".log_step") and arr.ndim == 2 and arr.shape[1] == 1:
            arr = arr[:, 0]  # reference stores log_step as (P, 1)
        if key == "params.eventssm.embed.embedding":  # reference rows = the channels; append pad/bos/eos rows
            channels = config.vocab_size - 3
            if arr.shape != (channels, want[1]):
                raise ValueError(
                    f"{source}: {ref_key} has shape {arr.shape} but the settings give ({channels}, {want[1]}) "
                    f"(num_embeddings = the sensor's channels, d_model): the checkpoint does not fit the settings; "
                    "pass the run's values with --config_json"
                )
            arr = np.concatenate([arr, np.zeros((want[0] - channels, want[1]), np.float32)], axis=0)
        if tuple(arr.shape) != want:
            raise ValueError(
                f"{source}: {ref_key} has shape {tuple(arr.shape)} but {key} of the eventlm model needs {want}; the "
                f"checkpoint does not fit the settings ({hint}): pass the run's values with --config_json"
            )
        out[key] = arr
    if unmapped:
        raise ValueError(
            f"{source}: {len(unmapped)} variable(s) of the checkpoint have no place in a model with these settings "
            f"(num_stages={config.num_stages}, num_layers_per_stage={config.num_layers_per_stage}, "
            f"batchnorm={config.norm == 'batch'}): {unmapped[:8]}{' ...' if len(unmapped) > 8 else ''}"
        )
    missing = sorted(set(expected) - set(out))
    if missing:
        raise ValueError(
            f"{source}: the checkpoint lacks {len(missing)} variable(s) the settings need "
            f"(num_stages={config.num_stages}, num_layers_per_stage={config.num_layers_per_stage}, "
            f"batchnorm={config.norm == 'batch'}): {missing[:8]}{' ...' if len(missing) > 8 else ''}"
        )
    nested = unflatten_variables(out)
    return {"params": nested["params"], **({"batch_stats": nested["batch_stats"]} if "batch_stats" in nested else {})}


# ------------------------------------------------------------------------------------------------
# Model card
# ------------------------------------------------------------------------------------------------

CARD_TEMPLATE = """---
{{ card_data }}
---

# {{ model_name }}

An **EventSSM** (Schöne et al. 2024, [arXiv 2404.18508]({{ paper }})) for {{ dataset }} classification, converted
to [eventlm](https://github.com/) from an original checkpoint of the authors' code.

## Where the weights come from

- Original code and checkpoints: [{{ repo }}]({{ repo }}); model settings `configs/model/{{ reference_config }}.yaml`
  {%- if overrides %}, with these values of the run: `{{ overrides }}`{% endif %}.
- Checkpoint: `{{ checkpoint_name }}` ({{ checkpoint_format }}{% if step is not none %}, training step {{ step }}{% endif %}),
  written by the original trainer (`flax.training.checkpoints`).
- Converted by `eventlm.models.eventssm.convert_original_eventssm_checkpoint` (eventlm {{ version }}).
  The weights are the original ones, unchanged, including the batch-norm statistics where the model has them;
  the embedding gained {{ num_special }} zero rows for eventlm's pad/bos/eos tokens, which a classifier never reads.
  SHA-256 of the converted tensors: `{{ digest }}`.
- The original authors' terms apply to the weights; their code is MIT-licensed.

## It computes what the original code computed

The config switches on the original conventions, so that the same raw events give the same logits:
`gap_convention="after"` (each event carries the gap to the next one; the last event only marks the end),
`pooling_keep="first"` (a pooling window keeps its first event's state), `readout_convention="reference"`
(only complete windows of {{ total_stride }} events are read out; timepool divides by the whole duration), time in
ms (`time_unit_us=1000`). The tokenizer gives the original tokens: {{ token_text }}.
A stream needs more than {{ total_stride }} events to fill a window (the original code returned NaN below that;
this model returns the classifier's bias).

## Use

```python
from eventlm import EventTokenizer, AutoModelForSequenceClassification

tokenizer = EventTokenizer.from_pretrained("{{ repo_id }}")
model = AutoModelForSequenceClassification.from_pretrained("{{ repo_id }}")
batch = tokenizer(streams, padding=True, return_tensors="np")   # streams: raw events (t µs, x, y, p)
logits = model(batch["input_ids"], batch["timestamps"], batch["attention_mask"]).logits
```

## Settings

| original setting | value |
|---|---|
{% for key, value in settings %}| {{ key }} | {{ value }} |
{% endfor %}
"""


def build_conversion_card(*, model_name, repo_id, reference_config, settings, overrides, info, digest, config):
    """README.md: YAML metadata (library eventlm, tags) and where the weights came from."""
    from huggingface_hub import ModelCard, ModelCardData

    from ... import __version__

    camera = settings["sensor_size"][1] > 1
    tags = ["eventssm", "state-space-model", "neuromorphic", "converted-checkpoint"]
    tags += ["event-camera", "dvs"] if camera else ["spiking-audio", "neuromorphic-audio"]
    data = ModelCardData(library_name="eventlm", tags=tags)
    token_text = ("token = x'·y' + W'·H'·p (`token_layout=\"reference-dvs\"`; different pixels share a token, as in "
                  "the original)" if camera else "token = audio channel")
    return ModelCard.from_template(
        data, template_str=CARD_TEMPLATE, model_name=model_name, repo_id=repo_id, paper=PAPER, repo=REFERENCE_REPO,
        dataset=_DATASETS.get(reference_config.split("/")[0], "event stream"), reference_config=reference_config,
        overrides=json.dumps(overrides, sort_keys=True) if overrides else "", checkpoint_name=Path(info["path"]).name,
        checkpoint_format="orbax folder" if info["format"] == "orbax" else "msgpack file", step=info["step"],
        version=__version__, num_special=3, digest=digest, total_stride=config.total_stride, token_text=token_text,
        settings=[(k, list(v) if isinstance(v, tuple) else v) for k, v in sorted(settings.items())],
    )


# ------------------------------------------------------------------------------------------------
# The conversion
# ------------------------------------------------------------------------------------------------


def convert_checkpoint(
    checkpoint_dir,
    reference_config: str,
    output_dir,
    config_overrides: Optional[dict] = None,
    push_to_hub: bool = False,
    hub_model_id: Optional[str] = None,
    token: Optional[str] = None,
    private: Optional[bool] = None,
) -> Path:
    """Convert the reference checkpoint at `checkpoint_dir` (settings of `reference_config`, overridden by
    `config_overrides`) into an eventlm folder `output_dir` (config.json, model.safetensors,
    tokenizer_config.json, README.md), written atomically; optionally push it to `hub_model_id`.
    Returns the output folder."""
    settings = reference_settings(reference_config, config_overrides)
    output_dir = Path(output_dir)
    model_name = hub_model_id or output_dir.resolve().name
    tokenizer = reference_tokenizer(settings, name=f"eventssm-reference-{reference_config.replace('/', '-')}")
    config = reference_eventssm_config(settings, tokenizer, _class_names(reference_config, settings["num_classes"]))
    reference_variables, info = read_checkpoint(checkpoint_dir)
    if config.norm == "batch" and "batch_stats" not in reference_variables:
        raise ValueError(
            f"{info['path']}: the settings use batch norm (batchnorm=true) but the checkpoint holds no batch-norm "
            "statistics (model_state/batch_stats); is it a layer-norm model? pass batchnorm=false with --config_json"
        )
    variables = convert_variables(reference_variables, config, source=info["path"])
    card = build_conversion_card(
        model_name=model_name, repo_id=model_name, reference_config=reference_config, settings=settings,
        overrides=flatten_override_dict(config_overrides or {}), info=info, digest=params_digest(variables),
        config=config,
    )
    folder = write_converted_model(config, variables, tokenizer, card, output_dir, push_to_hub=push_to_hub,
                                   hub_model_id=hub_model_id, token=token, private=private,
                                   commit_message=f"Convert original EventSSM checkpoint ({reference_config})")
    logger.info("converted %s (%s, step %s) into %s: %d parameters", info["path"], info["format"], info["step"],
                folder, num_parameters(variables))
    return folder


# ------------------------------------------------------------------------------------------------
# Command line (also `eventlm convert-checkpoint`)
# ------------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--checkpoint_dir", required=True,
                        help="the original checkpoint: checkpoint_<step> (orbax folder or msgpack file), the "
                             "checkpoints/ folder holding it (newest step), or the run's log folder")
    parser.add_argument("--reference_config", required=True, choices=sorted(REFERENCE_CONFIGS),
                        help="the reference model settings the run used (configs/model/<name>.yaml)")
    parser.add_argument("--config_json", default=None,
                        help="JSON (or the run's Hydra config.yaml) with settings that differ from the yaml, e.g. "
                             '{"num_classes": 10, "num_embeddings": 700}')
    parser.add_argument("--output_dir", required=True, help="the eventlm model folder to write")
    parser.add_argument("--push_to_hub", action="store_true", help="upload the folder to the Hub afterwards")
    parser.add_argument("--hub_model_id", default=None, help="Hub repo id (default: the output folder's name)")
    parser.add_argument("--private", action="store_true", default=None, help="create the Hub repo private")
    return parser


def run(args: argparse.Namespace) -> Path:
    overrides = load_config_file(args.config_json) if args.config_json else None
    folder = convert_checkpoint(args.checkpoint_dir, args.reference_config, args.output_dir, overrides,
                                push_to_hub=args.push_to_hub, hub_model_id=args.hub_model_id, private=args.private)
    print(f"converted {args.checkpoint_dir} ({args.reference_config}) into {folder}")
    return folder


def main(argv=None) -> int:
    parser = add_arguments(argparse.ArgumentParser(
        prog="python -m eventlm.models.eventssm.convert_original_eventssm_checkpoint",
        description="Convert an original EventSSM checkpoint (event-ssm by Schöne et al.) into an eventlm model folder.",
    ))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        run(args)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
