"""Command-line arguments of the scripts and the `eventlm` command, as dataclasses for HfArgumentParser.

    python scripts/run_classification.py --preset shd --dataset_name someone/shd-events --output_dir out/shd
    python scripts/run_classification.py args.yaml          # the same fields from a JSON / YAML file

A preset (`--preset shd | ssc | dvs-gesture | tiny | spoken-digits | synthetic`) fills every setting the user leaves
unset with the paper's values for that task (reference event-ssm configs/task/*.yaml): model size,
epochs, batch size, learning rates, warm-up, weight decay, gradient accumulation, event slicing and
the augmentation pipeline. A flag given on the command line always wins over the preset.

transformers' own TrainingArguments works without torch but is full of torch-only settings; eventlm
keeps its own small dataclass with the same names where the meaning is the same (output_dir,
num_train_epochs, per_device_train_batch_size, gradient_accumulation_steps, max_steps, logging_steps,
eval_strategy, save_steps, save_total_limit, metric_for_best_model, push_to_hub, hub_model_id, ...).
"""

import dataclasses
import functools
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from ..errors import did_you_mean

# The paper's settings per task. "model": the model_type (eventlm.auto.MODEL_TYPES), its config's from_preset
# name and overrides; "tokenizer": EventTokenizer preset; "data"/"training": DataArguments / TrainingArguments
# fields. Learning rates are per sample: lr = ssm_base_lr x global batch (scale_lr_with_batch). What every task
# shares (ssm_weight_decay 0, cosine schedule, no gradient accumulation unless stated) comes from _FALLBACKS.
TASK_PRESETS: Dict[str, Dict[str, dict]] = {
    "shd": {
        "model": {"model_type": "eventssm", "preset": "shd"},
        "tokenizer": "shd",
        "data": dict(validation_split_percentage=10.0, pad_to_multiple_of=1024, augment=True,
                     augmentation_preset="shd"),
        "training": dict(num_train_epochs=30, per_device_train_batch_size=32, per_device_eval_batch_size=128,
                         ssm_base_lr=1.7e-5, lr_factor=10.0, warmup_epochs=3.0, weight_decay=0.03),
    },
    "ssc": {
        "model": {"model_type": "eventssm", "preset": "ssc"},
        "tokenizer": "ssc",
        "data": dict(validation_split_percentage=10.0, pad_to_multiple_of=1024, augment=True,
                     augmentation_preset="ssc"),
        "training": dict(num_train_epochs=200, per_device_train_batch_size=64, per_device_eval_batch_size=128,
                         ssm_base_lr=5e-6, lr_factor=5.0, warmup_epochs=20.0, weight_decay=0.05),
    },
    "dvs-gesture": {
        "model": {"model_type": "eventssm", "preset": "dvs-gesture"},
        "tokenizer": "dvs-gesture",
        # training on 65,536-event slices with 50 % overlap; evaluation on whole recordings
        "data": dict(validation_split_percentage=20.0, pad_to_multiple_of=65536, slice_events=65536,
                     slice_overlap=0.5, augment=True, augmentation_preset="dvs-gesture"),
        "training": dict(num_train_epochs=100, per_device_train_batch_size=16, per_device_eval_batch_size=4,
                         ssm_base_lr=1.2e-5, lr_factor=6.0, warmup_epochs=10.0, weight_decay=0.02,
                         gradient_accumulation_steps=4),
    },
    # the Spike-Driven Transformer on DVS128 Gesture (its reference's conf/gesture/2_256_200E_t16.yml: lr 3e-4
    # at batch 16, weight decay 0.06, 10 warm-up epochs, 200 epochs; AdamW here where it used LAMB); whole
    # recordings, T = 16 frames each; the camera comes from the tokenizer
    "sdt-dvs-gesture": {
        "model": {"model_type": "spike-driven-transformer", "preset": "dvs-gesture"},
        "tokenizer": "dvs-gesture",
        "data": dict(validation_split_percentage=20.0, pad_to_multiple_of=65536, augment=False),
        "training": dict(num_train_epochs=200, per_device_train_batch_size=16, per_device_eval_batch_size=16,
                         ssm_base_lr=1.875e-5, lr_factor=1.0, warmup_epochs=10.0, weight_decay=0.06),
    },
    # the Spike-Driven Transformer on CIFAR10-DVS (its reference's conf/cifar10-dvs/2_256_200E_t10_TET.yml: lr
    # 7.5e-3 at batch 32 with AdamW, weight decay 1e-4, 10 warm-up epochs, 200 epochs, TET); 128×128 events,
    # frames resized to 64×64 inside the model as the reference's loader did
    "sdt-cifar10-dvs": {
        "model": {"model_type": "spike-driven-transformer", "preset": "cifar10-dvs"},
        "tokenizer": "cifar10-dvs",
        "data": dict(validation_split_percentage=10.0, pad_to_multiple_of=65536, augment=False),
        "training": dict(num_train_epochs=200, per_device_train_batch_size=32, per_device_eval_batch_size=32,
                         ssm_base_lr=2.34e-4, lr_factor=1.0, warmup_epochs=10.0, weight_decay=1e-4),
    },
    # eventlm's audio variant (no reference run exists): 10 ms bins, causal attention over them, streams
    "sdt-shd": {
        "model": {"model_type": "spike-driven-transformer", "preset": "shd"},
        "tokenizer": "shd",
        "data": dict(validation_split_percentage=10.0, pad_to_multiple_of=1024, augment=True,
                     augmentation_preset="shd"),
        "training": dict(num_train_epochs=30, per_device_train_batch_size=32, per_device_eval_batch_size=128,
                         ssm_base_lr=3e-5, lr_factor=1.0, warmup_epochs=3.0, weight_decay=0.01),
    },
    # the audio variant, small, on the embedded dataset (the README's EventSSM-vs-SDT table)
    "sdt-synthetic": {
        "model": {"model_type": "spike-driven-transformer", "preset": "shd", "overrides": dict(
            hidden_size=64, num_heads=4, mlp_ratio=2, num_layers=1, num_frames=120, num_labels=10)},
        "tokenizer": "shd",
        "data": dict(validation_split_percentage=10.0, pad_to_multiple_of=64, augment=False),
        "training": dict(num_train_epochs=3, per_device_train_batch_size=32, per_device_eval_batch_size=128,
                         ssm_base_lr=1e-4, lr_factor=1.0, warmup_epochs=1.0, weight_decay=0.01),
    },
    # the reference's tutorial settings (configs/task/tutorial.yaml with configs/model/shd/tiny.yaml)
    "tiny": {
        "model": {"model_type": "eventssm", "preset": "tiny"},
        "tokenizer": "shd",
        "data": dict(validation_split_percentage=10.0, pad_to_multiple_of=256, augment=False),
        "training": dict(num_train_epochs=5, per_device_train_batch_size=16, per_device_eval_batch_size=16,
                         ssm_base_lr=5e-5, lr_factor=10.0, warmup_epochs=1.0, weight_decay=0.01),
    },
    # the README's main job: the embedded spoken-digit dataset (eventlm.data.spoken_digits: 20 classes, 64
    # channels, held-out voices in test) built and trained on 2 CPU cores in a few minutes
    "spoken-digits": {
        "model": {"model_type": "eventssm", "preset": "tiny", "overrides": dict(
            hidden_size=32, state_size=32, num_ssm_blocks=4, num_stages=1, num_layers_per_stage=2,
            pooling_stride=4, pooling_mode="timepool", classifier_pooling="timepool", dropout=0.1)},
        "tokenizer": "spoken-digits",
        "data": dict(embedded_dataset="spoken-digits", pad_to_multiple_of=128, augment=False),
        "training": dict(num_train_epochs=12, per_device_train_batch_size=32, per_device_eval_batch_size=128,
                         ssm_base_lr=1e-4, lr_factor=10.0, warmup_epochs=1.0, weight_decay=0.01),
    },
    # the old main job: the embedded synthetic dataset (class in event order), small and fast: tests use it
    "synthetic": {
        "model": {"model_type": "eventssm", "preset": "tiny", "overrides": dict(
            hidden_size=32, state_size=32, num_ssm_blocks=4, num_stages=1, num_layers_per_stage=2,
            pooling_stride=4, pooling_mode="timepool", classifier_pooling="timepool", dropout=0.1)},
        "tokenizer": "shd",
        "data": dict(embedded_dataset="synthetic", validation_split_percentage=10.0, pad_to_multiple_of=64,
                     augment=False),
        "training": dict(num_train_epochs=3, per_device_train_batch_size=32, per_device_eval_batch_size=128,
                         ssm_base_lr=1e-4, lr_factor=10.0, warmup_epochs=1.0, weight_decay=0.01),
    },
}
MAIN_JOB_PRESET = "spoken-digits"  # the preset of `python scripts/run_classification.py` without arguments
EMBEDDED_DATASETS = ("spoken-digits", "synthetic")  # what --embedded_dataset names (eventlm.data.spoken_digits, .synthetic)

# what an unset field becomes when the preset leaves it open too
_FALLBACKS = {
    "num_train_epochs": 3.0, "per_device_train_batch_size": 16, "per_device_eval_batch_size": 32,
    "ssm_base_lr": 5e-5, "lr_factor": 10.0, "warmup_epochs": 1.0, "weight_decay": 0.01, "ssm_weight_decay": 0.0,
    "lr_scheduler_type": "cosine", "gradient_accumulation_steps": 1, "validation_split_percentage": 10.0,
    "pad_to_multiple_of": 256, "augment": False, "slice_events": 0, "slice_overlap": 0.5,
    "embedded_dataset": "synthetic",
}


@dataclass
class ModelArguments:
    """Which model to train or evaluate."""

    model_name_or_path: Optional[str] = field(default=None, metadata={
        "help": "A model folder or Hub repo id to start from (e.g. a next-event checkpoint to fine-tune: its "
                "backbone is kept, a new head is initialised). Unset: a new model from --preset."})
    preset: Optional[str] = field(default=None, metadata={
        "help": f"Task preset with the paper's settings: {', '.join(TASK_PRESETS)}. Default: '{MAIN_JOB_PRESET}' "
                "without --dataset_name (the main job), 'tiny' otherwise."})
    config_overrides: Optional[str] = field(default=None, metadata={
        "help": "Override config fields of a new model, e.g. 'hidden_size=64,num_stages=2,dropout=0.2'."})
    tokenizer_name: Optional[str] = field(default=None, metadata={
        "help": "EventTokenizer preset name, folder or repo id. Default: the model's own, else the preset's."})
    cache_dir: Optional[str] = field(default=None, metadata={"help": "Hugging Face cache folder."})
    revision: Optional[str] = field(default=None, metadata={"help": "Model revision (branch, tag, commit)."})
    token: Optional[str] = field(default=None, metadata={"help": "Hub token (default: the logged-in one)."})
    local_files_only: bool = field(default=False, metadata={"help": "Never go to the Hub."})


@dataclass
class DataArguments:
    """Which events to train and evaluate on."""

    dataset_name: Optional[str] = field(default=None, metadata={
        "help": "Hub repo id or local folder of an event dataset (t/x/y/p lists + label). Unset: an embedded "
                "dataset (--embedded_dataset; built once, cached in --synthetic_cache_dir)."})
    embedded_dataset: Optional[str] = field(default=None, metadata={
        "help": f"Without --dataset_name: which embedded dataset, {' | '.join(EMBEDDED_DATASETS)} (preset; "
                "spoken-digits for the main job, synthetic for the other presets)."})
    dataset_config_name: Optional[str] = field(default=None, metadata={"help": "Dataset configuration name."})
    synthetic_cache_dir: Optional[str] = field(default=None, metadata={
        "help": "Cache folder of the embedded datasets (default: $EVENTLM_CACHE, else ~/.cache/eventlm)."})
    recordings: Optional[List[str]] = field(default=None, metadata={
        "help": "Next-event pretraining on raw recordings instead of a dataset: files read with "
                "eventlm.data.read_events, cut into windows; the last part of each is held out for validation."})
    recording_format: Optional[str] = field(default=None, metadata={"help": "read_events format= for --recordings."})
    recording_options: Optional[str] = field(default=None, metadata={
        "help": "read_events options as JSON, e.g. '{\"address_bytes\": 2, \"tick_us\": 0.2}'."})
    window_events: int = field(default=1024, metadata={"help": "Events per window cut from --recordings."})
    holdout_fraction: float = field(default=0.2, metadata={
        "help": "Fraction at the end of each recording held out for validation (--recordings)."})
    train_split: str = field(default="train", metadata={"help": "Training split name."})
    validation_split: str = field(default="validation", metadata={
        "help": "Validation split (model selection). Missing: carved from the training split."})
    test_split: str = field(default="test", metadata={"help": "Split of the final evaluation (eval_results.json)."})
    validation_split_percentage: Optional[float] = field(default=None, metadata={
        "help": "Percent of the training split held out for validation when there is no validation split."})
    label_column_name: str = field(default="label", metadata={"help": "Column of the class labels."})
    max_train_samples: Optional[int] = field(default=None, metadata={"help": "Use only the first N training rows."})
    max_eval_samples: Optional[int] = field(default=None, metadata={"help": "Use only the first N validation/test rows."})
    max_length: Optional[int] = field(default=None, metadata={"help": "Longest padded sequence (events); longer samples are truncated."})
    pad_to_multiple_of: Optional[int] = field(default=None, metadata={"help": "Padding bucket unit (events)."})
    slice_events: Optional[int] = field(default=None, metadata={"help": "Train on windows of this many events (0: whole samples)."})
    slice_overlap: Optional[float] = field(default=None, metadata={"help": "Overlap of training windows (fraction)."})
    augment: Optional[bool] = field(default=None, metadata={"help": "Apply the paper's training augmentations."})
    augmentation_preset: Optional[str] = field(default=None, metadata={"help": "Augmentation preset: shd | ssc | dvs-gesture."})


@dataclass
class TrainingArguments:
    """How to train (names as in transformers.TrainingArguments where the meaning is the same)."""

    output_dir: Optional[str] = field(default=None, metadata={"help": "Where the model, results and checkpoints go."})
    overwrite_output_dir: bool = field(default=False, metadata={
        "help": "Start afresh in an output folder that holds another run (its checkpoints are deleted)."})
    do_train: bool = field(default=True, metadata={"help": "Train."})
    do_eval: bool = field(default=True, metadata={"help": "Evaluate on the test split at the end (eval_results.json)."})
    seed: int = field(default=1234, metadata={"help": "Seed of initialisation, data order, augmentation, dropout."})
    num_train_epochs: Optional[float] = field(default=None, metadata={"help": "Epochs (preset)."})
    max_steps: int = field(default=-1, metadata={"help": "If > 0: optimizer updates to run (overrides epochs)."})
    per_device_train_batch_size: Optional[int] = field(default=None, metadata={"help": "Batch per device (preset)."})
    per_device_eval_batch_size: Optional[int] = field(default=None, metadata={"help": "Eval batch per device (preset)."})
    gradient_accumulation_steps: Optional[int] = field(default=None, metadata={"help": "Micro-batches per update (preset)."})
    ssm_base_lr: Optional[float] = field(default=None, metadata={
        "help": "Base learning rate per sample (the rate is this x global batch), of every parameter group the "
                "model names besides 'regular' (EventSSM: 'ssm', i.e. B and Lambda) (preset)."})
    lr_factor: Optional[float] = field(default=None, metadata={
        "help": "The 'regular' group's rate (every parameter the model puts in no group of its own) = lr_factor x "
                "base rate."})
    scale_lr_with_batch: bool = field(default=True, metadata={"help": "Multiply ssm_base_lr by the global batch."})
    weight_decay: Optional[float] = field(default=None, metadata={"help": "Weight decay of the 'regular' group."})
    ssm_weight_decay: Optional[float] = field(default=None, metadata={
        "help": "Weight decay of the model's other groups (EventSSM: 'ssm', B and Lambda)."})
    warmup_epochs: Optional[float] = field(default=None, metadata={"help": "Linear warm-up length in epochs."})
    lr_scheduler_type: Optional[str] = field(default=None, metadata={"help": "cosine | constant (after warm-up)."})
    adam_beta1: float = field(default=0.9, metadata={"help": "AdamW beta1."})
    adam_beta2: float = field(default=0.999, metadata={"help": "AdamW beta2."})
    adam_epsilon: float = field(default=1e-8, metadata={"help": "AdamW epsilon."})
    max_grad_norm: float = field(default=0.0, metadata={"help": "Clip the gradient's global norm (0: off, as the paper)."})
    logging_steps: int = field(default=10, metadata={"help": "Log train metrics every N steps."})
    eval_strategy: str = field(default="epoch", metadata={"help": "Validate every 'epoch', every eval_'steps', or 'no'."})
    eval_steps: Optional[int] = field(default=None, metadata={"help": "Validation interval with eval_strategy=steps."})
    save_steps: int = field(default=0, metadata={"help": "Also checkpoint every N steps (0: at validations only)."})
    save_total_limit: int = field(default=1, metadata={"help": "Latest checkpoints kept (the best one is kept too)."})
    metric_for_best_model: Optional[str] = field(default=None, metadata={
        "help": "Validation metric of model selection (default: accuracy; loss for next-event)."})
    greater_is_better: Optional[bool] = field(default=None, metadata={"help": "Default: False for losses."})
    load_best_model_at_end: bool = field(default=True, metadata={"help": "Finish with the best validation checkpoint."})
    report_to: str = field(default="tensorboard", metadata={"help": "tensorboard | none (metrics.jsonl is always written)."})
    disable_tqdm: bool = field(default=False, metadata={"help": "No progress bar."})
    prefetch_batches: int = field(default=2, metadata={"help": "Batches prepared ahead in a background thread."})
    async_checkpointing: bool = field(default=True, metadata={"help": "Write checkpoints in the background."})
    push_to_hub: bool = field(default=False, metadata={"help": "Upload the model folder to the Hub at the end."})
    hub_model_id: Optional[str] = field(default=None, metadata={"help": "Repo id to push to (default: output folder name)."})
    hub_token: Optional[str] = field(default=None, metadata={"help": "Hub token for the push."})
    hub_private_repo: Optional[bool] = field(default=None, metadata={"help": "Create the repo private."})
    num_processes: Optional[int] = field(default=None, metadata={
        "help": "Processes of a multi-process run (jax.distributed), one per host or per accelerator group "
                "(default: JAX_NUM_PROCESSES, or SLURM / Open MPI's task count; 1)."})
    process_id: Optional[int] = field(default=None, metadata={
        "help": "This process's rank, 0..num_processes-1 (default: JAX_PROCESS_ID, or SLURM / Open MPI's)."})
    coordinator_address: Optional[str] = field(default=None, metadata={
        "help": "HOST:PORT of process 0, the same on every process (default: JAX_COORDINATOR_ADDRESS, or "
                "derived from the SLURM job)."})
    distributed_timeout: int = field(default=100, metadata={
        "help": "Seconds a process waits for the others (start-up, a peer that died) before it stops with an error."})


# The commands a field belongs to (a field not named here belongs to every command): a command's --help lists
# only its own fields, and another command's flag is an error (an args file may hold them all).
_TRAINING = ("train", "pretrain")  # optimizer, schedule, checkpoints, augmentation, the push
_LABELLED = ("train", "evaluate")  # class labels
_UNLABELLED = ("pretrain", "evaluate")  # raw recordings cut into windows (next-event prediction)
FIELD_COMMANDS: Dict[str, Tuple[str, ...]] = {
    **dict.fromkeys((
        "max_train_samples", "slice_events", "slice_overlap", "augment", "augmentation_preset", "overwrite_output_dir",
        "do_train", "do_eval", "num_train_epochs", "max_steps", "per_device_train_batch_size",
        "gradient_accumulation_steps", "ssm_base_lr", "lr_factor", "scale_lr_with_batch", "weight_decay",
        "ssm_weight_decay", "warmup_epochs", "lr_scheduler_type", "adam_beta1", "adam_beta2", "adam_epsilon",
        "max_grad_norm", "logging_steps", "eval_strategy", "eval_steps", "save_steps", "save_total_limit",
        "metric_for_best_model", "greater_is_better", "load_best_model_at_end", "async_checkpointing", "push_to_hub",
        "hub_model_id", "hub_token", "hub_private_repo"), _TRAINING),
    "label_column_name": _LABELLED,
    **dict.fromkeys(("recordings", "recording_format", "recording_options", "window_events", "holdout_fraction"),
                    _UNLABELLED),
}


def default_preset(model_args: ModelArguments, data_args: DataArguments) -> str:
    if model_args.preset:
        return model_args.preset
    return MAIN_JOB_PRESET if data_args.dataset_name is None and not data_args.recordings else "tiny"


def resolve_presets(model_args: ModelArguments, data_args: DataArguments, training_args: TrainingArguments) -> str:
    """Fill every unset (None) field from the task preset, then from the fallbacks. Returns the preset name."""
    name = default_preset(model_args, data_args)
    if name not in TASK_PRESETS:
        raise ValueError(f"unknown --preset {name!r}{did_you_mean(name, TASK_PRESETS)}; choose one of "
                         f"{sorted(TASK_PRESETS)}")
    preset = TASK_PRESETS[name]
    model_args.preset = name
    for obj, values in ((data_args, preset["data"]), (training_args, preset["training"])):
        for f in dataclasses.fields(obj):
            if getattr(obj, f.name) is None:
                if f.name in values:
                    setattr(obj, f.name, values[f.name])
                elif f.name in _FALLBACKS:
                    setattr(obj, f.name, _FALLBACKS[f.name])
    if data_args.embedded_dataset not in EMBEDDED_DATASETS:
        raise ValueError(f"unknown --embedded_dataset {data_args.embedded_dataset!r}"
                         f"{did_you_mean(data_args.embedded_dataset, EMBEDDED_DATASETS)}; choose one of "
                         f"{', '.join(EMBEDDED_DATASETS)}")
    if training_args.gradient_accumulation_steps < 1:
        raise ValueError(f"gradient_accumulation_steps must be >= 1, got {training_args.gradient_accumulation_steps}")
    for name_ in ("per_device_train_batch_size", "per_device_eval_batch_size"):
        if getattr(training_args, name_) < 1:
            raise ValueError(f"{name_} must be >= 1, got {getattr(training_args, name_)}")
    return name


def parse_config_overrides(text: Optional[str]) -> Dict[str, object]:
    """'hidden_size=64,dropout=0.2,norm=batch' -> {"hidden_size": 64, "dropout": 0.2, "norm": "batch"}."""
    out: Dict[str, object] = {}
    if not text:
        return out
    import json

    for item in text.split(","):
        if not item.strip():
            continue
        if "=" not in item:
            raise ValueError(f"--config_overrides takes key=value pairs separated by commas, got {item!r}")
        key, value = (s.strip() for s in item.split("=", 1))
        try:
            out[key] = json.loads(value.lower() if value.lower() in ("true", "false", "null") else value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def parse_args(dataclass_types: Sequence[type], argv: Optional[Sequence[str]] = None, prog: Optional[str] = None,
               description: Optional[str] = None, command: Optional[str] = None) -> Tuple:
    """HfArgumentParser over `dataclass_types`: flags, or one .json / .yaml / .yml file with the fields.
    prog / description: the command's own usage line and help text. command ('train' | 'pretrain' |
    'evaluate'): its --help lists only the fields that belong to it (FIELD_COMMANDS); another command's
    flag is accepted with a warning that this command ignores it (a flag list or args file may be shared).
    Flags are never abbreviated (a prefix such as --num_train_epoch is an error, with the flag it may mean)."""
    from .._quiet import import_transformers_quietly

    import_transformers_quietly()
    from transformers import HfArgumentParser

    argv = list(sys.argv[1:] if argv is None else argv)
    prog = prog or (f"eventlm {command}" if command else None)
    usage = f"{prog} [--flag value ...] | {prog} args.yaml" if prog else None  # the flags: under options
    parser = HfArgumentParser(tuple(dataclass_types), prog=prog, usage=usage, description=description,
                              allow_abbrev=False)
    parser.error = functools.partial(_short_error, parser.prog)  # one line, not the 60-line usage
    others = _hide_other_commands(parser, dataclass_types, command) if command else {}
    unknown = _unknown_flags(parser, argv, others)
    if unknown:
        parser.error("; ".join(unknown))
    ignored = [a.split("=", 1)[0] for a in argv if a.split("=", 1)[0] in others]
    if ignored:  # a flag list shared between commands still works; what this command leaves unused is said
        logging.getLogger(__name__).warning(
            "eventlm %s ignores %s (flags of %s)", command, " ".join(ignored),
            " / ".join(sorted({f"eventlm {c}" for flag in ignored for c in others[flag]})))
    if len(argv) == 1 and argv[0].lower().endswith((".json", ".yaml", ".yml")):
        path = Path(argv[0])
        if not path.is_file():
            raise FileNotFoundError(f"argument file {str(path)!r} does not exist")
        if path.suffix.lower() == ".json":
            return parser.parse_json_file(str(path), allow_extra_keys=False)
        return parser.parse_yaml_file(str(path), allow_extra_keys=False)
    return parser.parse_args_into_dataclasses(args=argv)


def _hide_other_commands(parser, dataclass_types, command: str) -> Dict[str, Tuple[str, ...]]:
    """Hide from `parser`'s help the flags of fields that belong to other commands; {flag: their commands}."""
    import argparse

    owners = {f.name: FIELD_COMMANDS[f.name] for t in dataclass_types for f in dataclasses.fields(t)
              if command not in FIELD_COMMANDS.get(f.name, (command,))}
    others = {}
    for action in parser._actions:
        if action.dest in owners:
            action.help = argparse.SUPPRESS
            others.update({flag: owners[action.dest] for flag in action.option_strings})
    return others


def _unknown_flags(parser, argv, others=None) -> list:
    """'unrecognized argument --x (did you mean --y?)' for each flag of argv the parser does not know; the
    suggestion is one of this command's own flags (not one in `others`, another command's)."""
    import difflib

    others = others or {}
    known = [o for action in parser._actions for o in action.option_strings if o not in others]
    out = []
    for arg in argv:
        if not arg.startswith("--"):
            continue
        flag = arg.split("=", 1)[0]
        if flag in known or flag in others:
            continue
        close = difflib.get_close_matches(flag, known, n=1, cutoff=0.6)
        out.append(f"unrecognized argument {flag}" + (f" (did you mean {close[0]}?)" if close else ""))
    return out


def _short_error(prog: str, message: str):
    """argparse's error as one line naming the command and where its flags are listed (exit status 2)."""
    print(f"{prog}: error: {message}  ({prog} --help lists the flags)", file=sys.stderr)
    sys.exit(2)
