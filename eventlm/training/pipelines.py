"""The jobs behind the scripts and the `eventlm` command: classification, next-event pretraining, evaluation.

    from eventlm.training.pipelines import run_classification
    results = run_classification(ModelArguments(), DataArguments(), TrainingArguments(output_dir="out/x"))

Every job checks its inputs before the first training step (dataset columns, label range, vocabulary
sizes, what the output folder already holds) and raises ValueError naming the problem. Output folder
(HF examples layout): config.json, model.safetensors, tokenizer_config.json, README.md (model card),
train_results.json, eval_results.json, all_results.json, metrics.jsonl, runs/ (TensorBoard),
training_curves.png, confusion_matrix.png (+ .json), checkpoints/ (orbax; latest and best),
run_args.json (what this run was started with: a rerun with the same arguments resumes).
"""

import dataclasses
import json
import logging
import math
import shutil
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from .arguments import (TASK_PRESETS, DataArguments, ModelArguments, TrainingArguments, parse_config_overrides,
                        resolve_presets)
from .card import build_model_card, push_folder_to_hub
from .metrics import save_results, write_json_atomic
from .plots import plot_training_curves
from .sharding import broadcast_from_main, initialize_distributed, split_for_host
from .tasks import TASKS, task_for
from .trainer import CHECKPOINT_DIR, Trainer
from ..data.events import flat_column
from .baselines import baseline_lines, classification_baselines

logger = logging.getLogger(__name__)

RUN_ARGS_FILE = "run_args.json"
EVENT_COLUMNS = ("t", "x")  # y and p may be absent (audio sensors)
# arguments that do not change what a run computes (a rerun differing only in these still resumes)
_RUN_INDEPENDENT = {"output_dir", "overwrite_output_dir", "do_train", "do_eval", "disable_tqdm", "report_to",
                    "prefetch_batches", "async_checkpointing", "push_to_hub", "hub_model_id", "hub_token",
                    "hub_private_repo", "logging_steps", "cache_dir", "token", "local_files_only",
                    "synthetic_cache_dir", "save_total_limit", "per_device_eval_batch_size",
                    # the global batch (per device x devices) is what counts, not how processes share the devices
                    "num_processes", "process_id", "coordinator_address", "distributed_timeout"}
DEFAULT_OUTPUT_DIRS = {"classification": "out/classification", "next-event": "out/next-event",
                       "evaluation": "out/evaluation"}


# ----------------------------------------------------------------------------------------------------
# set-up
# ----------------------------------------------------------------------------------------------------


def setup_logging(level: int = logging.INFO) -> None:
    """The scripts print eventlm.training's messages plainly; other libraries' loggers stay at WARNING."""
    ours = logging.getLogger("eventlm.training")
    if not any(getattr(h, "_eventlm", False) for h in ours.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler._eventlm = True
        ours.addHandler(handler)
    ours.setLevel(level)
    ours.propagate = False
    try:  # orbax and absl log every checkpoint at INFO
        import absl.logging

        absl.logging.set_verbosity(absl.logging.WARNING)
    except ImportError:  # pragma: no cover
        pass


def run_signature(model_args, data_args, training_args) -> Dict[str, Any]:
    """The arguments that determine a run's trajectory (what resume compares)."""
    out = {}
    for obj in (model_args, data_args, training_args):
        for f in dataclasses.fields(obj):
            if f.name not in _RUN_INDEPENDENT:
                value = getattr(obj, f.name)
                out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


def prepare_output_dir(training_args: TrainingArguments, signature: Dict[str, Any], claim: bool = True) -> bool:
    """Make sure output_dir may hold this run; returns True when a run with the same arguments is there to
    resume. An output folder holding another run (other arguments, or files that are not an eventlm run)
    raises ValueError unless --overwrite_output_dir, which deletes the previous run's checkpoints and logs.
    claim=False only checks: `claim_output_dir` creates the folder and records the run once the data and
    the model have passed their checks (a job refused up front leaves no folder behind)."""
    out = Path(training_args.output_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"output_dir {str(out)!r} is a file, not a folder")
    record = out / RUN_ARGS_FILE
    occupied = out.is_dir() and any(out.iterdir())
    if occupied and training_args.overwrite_output_dir and _is_main():
        for name in (CHECKPOINT_DIR, "runs"):
            shutil.rmtree(out / name, ignore_errors=True)
        for name in (RUN_ARGS_FILE, "metrics.jsonl"):
            (out / name).unlink(missing_ok=True)
    elif occupied and not _is_main():  # the main process checks; the others follow it
        return (out / CHECKPOINT_DIR).is_dir()
    elif occupied:
        if not record.is_file():
            raise ValueError(
                f"output_dir {str(out)!r} already exists and is not empty, and holds no eventlm run "
                f"({RUN_ARGS_FILE} missing); choose a new --output_dir or pass --overwrite_output_dir"
            )
        previous = json.loads(record.read_text(encoding="utf-8"))
        diff = {k: (previous.get(k), signature.get(k)) for k in sorted(set(previous) | set(signature))
                if previous.get(k) != signature.get(k)}
        if diff:
            shown = "; ".join(f"{k}: {a!r} there, {b!r} now" for k, (a, b) in list(diff.items())[:6])
            raise ValueError(
                f"output_dir {str(out)!r} holds another run (different arguments: {shown}); choose a new "
                f"--output_dir, or pass --overwrite_output_dir to start afresh there"
            )
        return (out / CHECKPOINT_DIR).is_dir()
    if claim:
        claim_output_dir(training_args, signature)
    return False


def claim_output_dir(training_args: TrainingArguments, signature: Dict[str, Any]) -> None:
    """Create output_dir and record the run's arguments (what a resume compares), unless already there."""
    out = Path(training_args.output_dir)
    if _is_main() and not (out / RUN_ARGS_FILE).is_file():
        out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out / RUN_ARGS_FILE, signature)


# ----------------------------------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------------------------------


def load_event_datasets(data_args: DataArguments, model_args: ModelArguments, seed: int):
    """{"train", "validation", "test"} splits (datasets.Dataset in numpy format) of the run's dataset:
    the embedded synthetic dataset, a Hub repo id / local folder, or windows of --recordings.
    Without a validation split, validation_split_percentage % of train is held out (seeded)."""
    import datasets

    if data_args.recordings:
        return recordings_to_datasets(data_args)
    if data_args.dataset_name is None:
        ds = load_embedded_dataset(data_args)
    else:
        ds = datasets.load_dataset(data_args.dataset_name, data_args.dataset_config_name,
                                   cache_dir=model_args.cache_dir, token=model_args.token)
    if not isinstance(ds, datasets.DatasetDict):
        ds = datasets.DatasetDict({data_args.train_split: ds})
    names = {"train": data_args.train_split, "validation": data_args.validation_split, "test": data_args.test_split}
    splits = {key: ds[name] for key, name in names.items() if name in ds}
    if "train" in splits and "validation" not in splits:
        pct = float(data_args.validation_split_percentage)
        if not 0 < pct < 100:
            raise ValueError(f"validation_split_percentage must be in (0, 100), got {pct}")
        parts = splits["train"].train_test_split(test_size=pct / 100.0, seed=seed, shuffle=True)
        splits["train"], splits["validation"] = parts["train"], parts["test"]
        logger.info("no %r split: held out %.0f%% of %r for validation", data_args.validation_split, pct,
                    data_args.train_split)
    limits = {"train": data_args.max_train_samples, "validation": data_args.max_eval_samples,
              "test": data_args.max_eval_samples}
    for name, limit in limits.items():
        if limit and name in splits:
            splits[name] = splits[name].select(range(min(limit, len(splits[name]))))
    if "train" not in splits and "test" not in splits:
        raise ValueError(f"the dataset has none of the splits {data_args.train_split!r}, "
                         f"{data_args.validation_split!r}, {data_args.test_split!r}; it has {sorted(ds)} "
                         f"(choose with --train_split / --validation_split / --test_split)")
    return {k: v.with_format("numpy") for k, v in splits.items()}


def load_embedded_dataset(data_args: DataArguments):
    """The embedded dataset --embedded_dataset names (spoken-digits | synthetic), built into the cache on first use."""
    if data_args.embedded_dataset == "spoken-digits":
        from ..data.spoken_digits import load_spoken_digits_dataset

        return load_spoken_digits_dataset(data_args.synthetic_cache_dir)
    from ..data.synthetic import load_synthetic_dataset

    return load_synthetic_dataset(data_args.synthetic_cache_dir)


def require_train_split(splits, data_args: DataArguments) -> None:
    if "train" not in splits:
        raise ValueError(f"training needs a {data_args.train_split!r} split; the dataset has {sorted(splits)} "
                         f"(choose one with --train_split)")


def recordings_to_datasets(data_args: DataArguments):
    """Cut each recording of --recordings into windows of window_events events; the last holdout_fraction
    of every recording (in events) becomes the validation split, so validation never overlaps training."""
    import datasets

    from ..data.events import EVENT_DTYPE, EVENT_FIELDS
    from ..data.readers import in_flag_words, parse_reader_options, read_events

    options = parse_reader_options(data_args.recording_options, "--recording_options")
    if not 0 < data_args.holdout_fraction < 1:
        raise ValueError(f"holdout_fraction must be in (0, 1), got {data_args.holdout_fraction}")
    if data_args.window_events < 2:
        raise ValueError(f"window_events must be at least 2 (a next event to predict), got {data_args.window_events}")
    rows = {"train": [], "validation": []}
    sensor = None
    for path in data_args.recordings:
        try:
            stream = read_events(path, format=data_args.recording_format, **options)
        except ValueError as err:  # its hints in this command's flags
            raise in_flag_words(err, "--recording_format", "--recording_options") from err
        if sensor is not None and tuple(stream.sensor_size) != sensor:
            raise ValueError(f"{path} has sensor {stream.sensor_size}, the other recordings {sensor}: "
                             f"pretrain on one sensor at a time")
        sensor = tuple(stream.sensor_size)
        events = stream.events
        cut = int(round(len(events) * (1.0 - data_args.holdout_fraction)))
        for split, part in (("train", events[:cut]), ("validation", events[cut:])):
            n = data_args.window_events
            for start in range(0, len(part) - n + 1, n):
                w = part[start:start + n]
                rows[split].append({"t": w["t"] - w["t"][0], "x": w["x"], "y": w["y"], "p": w["p"],
                                    "source": Path(path).name})
    for split, items in rows.items():
        if not items:
            raise ValueError(f"--recordings give no {split} window of {data_args.window_events} events; "
                             f"lower --window_events or --holdout_fraction")
    columns = {k: datasets.Sequence(datasets.Value(str(EVENT_DTYPE[k]))) for k in EVENT_FIELDS}  # int64, int16, int8
    features = datasets.Features({**columns, "source": datasets.Value("string")})
    out = {}
    for split, items in rows.items():
        cols = {k: [r[k] for r in items] for k in features}
        out[split] = datasets.Dataset.from_dict(cols, features=features).with_format("numpy")
    out["sensor_size"] = sensor
    return out


def check_event_columns(dataset, split: str, label_column: Optional[str] = None) -> None:
    """The columns a job needs (t, x and, for classification, the label) → ValueError naming the missing ones."""
    columns = list(getattr(dataset, "column_names", None) or (dataset[0].keys() if len(dataset) else []))
    needed = list(EVENT_COLUMNS) + ([label_column] if label_column else [])
    missing = [c for c in needed if c not in columns]
    if missing:
        raise ValueError(
            f"the {split!r} split lacks the column(s) {missing} (it has {columns}); an event dataset has per-sample "
            f"lists t (µs), x, y, p" + (f" and a '{label_column}' column (--label_column_name)" if label_column else "")
        )


def check_event_rows(dataset, split: str, tokenizer) -> None:
    """Every event of every row against the tokenizer's sensor and the schema, before the first step (one
    vectorised pass per column): x, y, p inside the sensor (W, H, P; P == 1 ignores p), integer µs timestamps
    ≥ 0 that never decrease within a row, fields of one length. ValueError naming split, row, field, event."""
    if not len(dataset):
        return
    W, H, P = tokenizer.sensor_size
    columns = list(getattr(dataset, "column_names", None) or dataset[0].keys())
    t, offsets = flat_column(dataset, "t")
    row_of = lambda k: int(np.searchsorted(offsets, k, side="right") - 1)  # noqa: E731

    def fail(k, field, problem, fix):
        row = row_of(k)
        raise ValueError(f"the {split!r} split, row {row}, field '{field}', event {k - int(offsets[row])}: {problem}; "
                         f"{fix}")

    if t.dtype.kind == "f":
        bad = ~np.isfinite(t) | (t != np.floor(t))
        if bad.any():
            k = int(np.argmax(bad))
            fail(k, "t", f"timestamp {t[k]} is not an integer µs", "timestamps are int64 µs")
    elif t.size and t.dtype.kind not in "iu":
        raise ValueError(f"the {split!r} split's 't' column holds {t.dtype}, not integer µs timestamps")
    if t.size and (t < 0).any():
        k = int(np.argmax(t < 0))
        fail(k, "t", f"timestamp {t[k]} is negative", "timestamps are µs from the recording's start")
    if t.size > 1:
        step_back = np.diff(t) < 0
        step_back[offsets[1:-1] - 1] = False  # row boundaries
        if step_back.any():
            k = int(np.argmax(step_back)) + 1
            fail(k, "t", f"timestamps decrease ({t[k - 1]} then {t[k]} µs)", "sort each row's events by t")
    for field, size in (("x", W), ("y", H), ("p", P if P > 1 else None)):
        if field not in columns:
            continue
        values, field_offsets = flat_column(dataset, field)
        if not np.array_equal(field_offsets, offsets):
            row = int(np.argmax(np.diff(field_offsets) != np.diff(offsets)))
            raise ValueError(f"the {split!r} split, row {row}: field '{field}' has "
                             f"{int(np.diff(field_offsets)[row])} values but 't' has {int(np.diff(offsets)[row])}")
        if size is None or not values.size:
            continue
        bad = (values < 0) | (values >= size)
        if bad.any():
            k = int(np.argmax(bad))
            fail(k, field, f"{field} = {values[k]} lies outside the sensor {(W, H, P)} of the tokenizer "
                 f"({field} must be in 0..{size - 1})",
                 "fix that row, or use a tokenizer (--tokenizer_name) and a model for the dataset's sensor")


def label_info(datasets_: Dict[str, Any], label_column: str) -> Tuple[int, Dict[int, str]]:
    """(num_labels, id2label) from the ClassLabel feature of the training split, else max label + 1."""
    train = datasets_["train"]
    feature = getattr(train, "features", {}).get(label_column) if hasattr(train, "features") else None
    names = getattr(feature, "names", None)
    if names:
        return len(names), {i: str(n) for i, n in enumerate(names)}
    top = max(int(np.max(np.asarray(d[label_column]))) for k, d in datasets_.items() if k != "sensor_size" and len(d))
    return top + 1, {i: str(i) for i in range(top + 1)}


def check_vocabulary(config, tokenizer) -> None:
    """The model must embed every token the tokenizer can emit; a model that reads pixels from the tokens
    (config.sensor_size: the Spike-Driven Transformer's frames) needs the tokenizer's very camera."""
    sensor = getattr(config, "sensor_size", None)
    if sensor is not None and tuple(sensor) != tuple(tokenizer.sensor_size):
        raise ValueError(
            f"the model reads frames of a {tuple(sensor)} sensor (width, height, polarities) but the tokenizer "
            f"is for {tuple(tokenizer.sensor_size)}; use the model's own tokenizer (--tokenizer_name) or a model "
            f"built for this sensor"
        )
    if config.vocab_size < tokenizer.vocab_size:
        raise ValueError(
            f"the model's vocabulary ({config.vocab_size} tokens) is smaller than the tokenizer's "
            f"({tokenizer.vocab_size}: {tokenizer.num_channels} channels + 3 special tokens); use the model's own "
            f"tokenizer or a model built for this sensor"
        )
    if getattr(config, "pad_token_id", None) not in (None, tokenizer.pad_token_id):
        logger.warning("model pad_token_id %s differs from the tokenizer's %s (padding is masked either way)",
                       config.pad_token_id, tokenizer.pad_token_id)


# ----------------------------------------------------------------------------------------------------
# tokenizer and model
# ----------------------------------------------------------------------------------------------------


def load_tokenizer(model_args: ModelArguments, data_args: DataArguments, sensor_size=None):
    """--tokenizer_name, else the model folder's tokenizer, else one for the dataset's sensor (from its card or
    the recordings), else the preset's."""
    from ..tokenization_events import EventTokenizer

    hub = hub_options(model_args)
    if model_args.tokenizer_name:
        return EventTokenizer.from_pretrained(model_args.tokenizer_name, **hub)
    if model_args.model_name_or_path:
        try:
            return EventTokenizer.from_pretrained(model_args.model_name_or_path, **hub)
        except (OSError, ValueError) as err:
            logger.info("no tokenizer with the model (%s); choosing one for the data", err)
    if sensor_size is None and data_args.dataset_name is not None:
        try:
            from ..data.hub import load_dataset_metadata

            sensor_size = load_dataset_metadata(data_args.dataset_name).get("sensor_size")
        except Exception as err:  # a dataset without an eventlm card
            logger.info("dataset card gives no sensor size (%s)", err)
    preset_name = TASK_PRESETS[model_args.preset]["tokenizer"]
    if sensor_size is not None:
        preset = EventTokenizer.from_pretrained(preset_name)
        if tuple(preset.sensor_size) == tuple(sensor_size):
            return preset
        return EventTokenizer(sensor_size=tuple(sensor_size))
    return EventTokenizer.from_pretrained(preset_name)


def hub_options(model_args: ModelArguments) -> Dict[str, Any]:
    """The Hub options of from_pretrained from the model arguments."""
    return dict(revision=model_args.revision, cache_dir=model_args.cache_dir, token=model_args.token,
                local_files_only=model_args.local_files_only)


def new_config(model_args: ModelArguments, tokenizer, **fields):
    """The preset's config (its model_type's config class, from_preset where the preset names one), sized to
    the tokenizer, with --config_overrides applied."""
    from ..auto import config_class_for

    spec = TASK_PRESETS[model_args.preset]["model"]
    values = dict(spec.get("overrides", {}))
    values.update(vocab_size=tokenizer.vocab_size, pad_token_id=tokenizer.pad_token_id,
                  bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    config_class = config_class_for(spec["model_type"])
    if hasattr(config_class, "sensor_size"):  # a model that reads pixels: the tokenizer's camera
        values["sensor_size"] = list(tokenizer.sensor_size)
    values.update(fields)
    values.update(parse_config_overrides(model_args.config_overrides))
    return config_class.from_preset(spec["preset"], **values) if "preset" in spec else config_class(**values)


def load_model(model_class, model_args: ModelArguments, tokenizer, seed: int, **config_fields):
    """A new model from the preset, or --model_name_or_path with `config_fields` (e.g. num_labels) applied;
    a checkpoint of another head keeps its backbone and gets a new head. model_class: a model class or the
    Auto class of the job's task (eventlm.auto.auto_class_for_task)."""
    if model_args.model_name_or_path:
        overrides = dict(config_fields)
        if "id2label" in overrides:  # num_labels follows id2label (setting both warns in transformers)
            overrides.pop("num_labels", None)
        overrides.update(parse_config_overrides(model_args.config_overrides))
        return model_class.from_pretrained(model_args.model_name_or_path, seed=seed, ignore_mismatched_sizes=True,
                                           **hub_options(model_args), **overrides)
    return model_class.from_config(new_config(model_args, tokenizer, **config_fields), seed=seed)


def make_augment(data_args: DataArguments, tokenizer, num_labels: Optional[int]):
    """augment(rows, rng) -> rows: the paper's per-sample augmentations, then batch CutMix (soft labels)."""
    if not data_args.augment:
        return None
    from ..data.augmentations import apply_to_row, augmentations_for, cut_mix_rows

    name = data_args.augmentation_preset
    if name is None:
        raise ValueError("--augment needs --augmentation_preset (shd | ssc | dvs-gesture)")
    pipeline = augmentations_for(name, sensor_size=tuple(tokenizer.sensor_size))

    def augment(rows, rng):
        rows = [apply_to_row(r, pipeline, rng=rng) for r in rows]
        if num_labels and pipeline.cut_mix > 0:
            rows = cut_mix_rows(rows, num_labels, tuple(tokenizer.sensor_size), rng=rng, p=pipeline.cut_mix)
        return rows

    return augment


def slice_training_split(dataset, data_args: DataArguments):
    """Windows of slice_events events (overlap slice_overlap) instead of whole training recordings."""
    if not data_args.slice_events:
        return dataset
    from ..data.collator import slice_by_event_count

    return dataset.with_format(None).map(
        slice_by_event_count, batched=True, batch_size=16,
        fn_kwargs={"length": data_args.slice_events, "overlap": data_args.slice_overlap},
        desc="slicing training recordings").with_format("numpy")


def make_collator(tokenizer, data_args: DataArguments, task: str, num_labels: Optional[int] = None):
    from ..data.collator import EventCollator

    max_length = data_args.max_length
    m = data_args.pad_to_multiple_of or 1
    if max_length is not None and max_length % m:
        max_length = -(-max_length // m) * m
    return EventCollator(tokenizer, pad_to_multiple_of=m, max_length=max_length, task=task, num_labels=num_labels)


# ----------------------------------------------------------------------------------------------------
# reporting
# ----------------------------------------------------------------------------------------------------


def _is_main() -> bool:
    import jax

    return jax.process_index() == 0


def _train_and_record(trainer, output_dir, resume: bool) -> Dict[str, Any]:
    """Train, write train_results.json; a rerun of a finished run keeps the numbers of the run that trained."""
    train_metrics = trainer.train(resume=resume)
    path = Path(output_dir) / "train_results.json"
    if trainer.steps_run or not path.exists():
        _save_results(output_dir, "train", train_metrics)
        return train_metrics
    return json.loads(path.read_text())


def _save_results(output_dir, split: str, metrics: Dict[str, Any]) -> None:
    if _is_main():
        save_results(output_dir, split, metrics)


def _finish_outputs(trainer: Trainer, model, tokenizer, training_args, model_args, data_args,
                    eval_metrics: Dict[str, Any], eval_split: str, evaluation=None,
                    baseline_text: Optional[str] = None) -> None:
    """save_pretrained of model and tokenizer, pictures, model card, optional push (main process only)."""
    if not _is_main():
        return
    out, task = Path(training_args.output_dir), trainer.task
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    curves = plot_training_curves(trainer.logger.records(), out / "training_curves.png", metrics=task.curve_metrics,
                                  baselines=task.curve_baselines(eval_metrics))
    picture = task.save_plots(out, evaluation, model.config, eval_split)
    shown = {f"validation_{m}" for m in task.curve_metrics}
    validation = {k: v for k, v in eval_metrics.items() if k in shown}
    card = build_model_card(
        model, task, eval_metrics, model_name=training_args.hub_model_id or out.resolve().name,
        repo_id=training_args.hub_model_id, dataset_name=data_args.dataset_name,
        embedded_dataset=data_args.embedded_dataset or "synthetic", recordings=data_args.recordings,
        recording_format=data_args.recording_format, dataset_split=eval_split,
        tokenizer=tokenizer, training_args=training_args, base_model=model_args.model_name_or_path,
        baseline_text=baseline_text, extra_results=validation,
        curves_image=curves.name if curves else None, confusion_image=picture.name if picture else None)
    card.save(str(out / "README.md"))
    if training_args.push_to_hub:
        repo_id = training_args.hub_model_id or out.resolve().name
        push_folder_to_hub(out, repo_id, token=training_args.hub_token, private=training_args.hub_private_repo,
                           commit_message=f"Upload {type(model).__name__} trained with eventlm")


def data_location(data_args: DataArguments, model_args: ModelArguments) -> str:
    """Where a run's events came from and where they are cached: the summary's "data:" line."""
    if data_args.recordings:
        names = ", ".join(map(str, data_args.recordings[:3])) + (" ..." if len(data_args.recordings) > 3 else "")
        return f"data: {len(data_args.recordings)} recording(s) read directly ({names}), not cached"
    if data_args.dataset_name is None:
        if data_args.embedded_dataset == "spoken-digits":
            from ..data.spoken_digits import spoken_digits_path as path_of
        else:
            from ..data.synthetic import synthetic_dataset_path as path_of
        name = data_args.embedded_dataset or "synthetic"
        return f"data: the embedded {name} dataset, built in {path_of(data_args.synthetic_cache_dir)}"
    import datasets

    cache = model_args.cache_dir or datasets.config.HF_DATASETS_CACHE
    return f"data: {data_args.dataset_name} (datasets cache: {cache})"


def _print_summary(lines: List[str]) -> None:
    if not _is_main():  # one summary per run, not one per process
        return
    width = max(len(line) for line in lines)
    print("=" * width)
    for line in lines:
        print(line)
    print("=" * width, flush=True)


# ----------------------------------------------------------------------------------------------------
# jobs
# ----------------------------------------------------------------------------------------------------


def start_processes(training_args: TrainingArguments) -> bool:
    """jax.distributed from --num_processes / --process_id / --coordinator_address (or the environment JAX and
    SLURM set); nothing for a single process. Returns True when several processes run."""
    return initialize_distributed(training_args.coordinator_address, training_args.num_processes,
                                  training_args.process_id, timeout=training_args.distributed_timeout)


def _prepare(model_args, data_args, training_args, task):
    start_processes(training_args)
    resolve_presets(model_args, data_args, training_args)
    if training_args.output_dir is None:
        training_args.output_dir = DEFAULT_OUTPUT_DIRS[task]
    # process 0 checks the output folder and decides whether to resume; the others follow its decision (a
    # refusal stops every process at once instead of leaving the others waiting in the first step); the
    # folder is claimed (created) later, once data and model have passed their checks
    signature = run_signature(model_args, data_args, training_args)
    refused = None
    try:
        resume = prepare_output_dir(training_args, signature, claim=False)
    except ValueError as err:
        refused, resume = err, False
    decision = broadcast_from_main(-1 if refused is not None else int(resume))
    if refused is not None and _is_main():
        raise refused
    if decision < 0:
        raise ValueError(f"process 0 refused the output folder {training_args.output_dir!r} (its output says why "
                         f"and what to do); this process stops with it")
    return bool(decision), signature


def run_classification(model_args: ModelArguments, data_args: DataArguments,
                       training_args: TrainingArguments) -> Dict[str, Any]:
    """Train (or fine-tune) a sequence classifier, select on validation, evaluate once on test, save the
    model folder with its card. Returns all_results (train_*, validation_*, eval_* on the test split)."""
    from ..auto import auto_class_for_task

    task = TASKS["classification"]
    resume, signature = _prepare(model_args, data_args, training_args, task.name)
    splits = load_event_datasets(data_args, model_args, training_args.seed)
    require_train_split(splits, data_args)
    label = task.label_column(data_args)
    for name, ds in splits.items():
        check_event_columns(ds, name, label)
    num_labels, id2label = label_info(splits, label)
    for name, ds in splits.items():
        task.check_labels(ds, name, label, num_labels)
    tokenizer = load_tokenizer(model_args, data_args)
    model = load_model(auto_class_for_task(task.name), model_args, tokenizer, training_args.seed,
                       num_labels=num_labels, id2label=id2label, label2id={v: k for k, v in id2label.items()})
    check_vocabulary(model.config, tokenizer)
    for name, ds in splits.items():  # every row, before the first step (not at the first batch that holds it)
        check_event_rows(ds, name, tokenizer)
    if model.config.num_labels != num_labels:
        raise ValueError(f"the model has {model.config.num_labels} labels, the dataset {num_labels}")
    claim_output_dir(training_args, signature)  # the checks passed: now the folder is made
    collator = make_collator(tokenizer, data_args, task.name, num_labels)
    # every process holds the whole training set (the trainer gives each its part of every global batch)
    train_split = slice_training_split(splits["train"], data_args) if training_args.do_train else None
    trainer = Trainer(model, training_args, train_split, split_for_host(splits["validation"]), collator,
                      augment=make_augment(data_args, tokenizer, num_labels), task=task)
    results: Dict[str, Any] = {}
    try:
        logger.info("model: %s parameters; train %d, validation %d, test %d samples; %s",
                    f"{model.num_parameters():,}", len(splits["train"]), len(splits.get("validation", [])),
                    len(splits.get("test", [])), "resuming" if resume else "new run")
        if training_args.do_train:
            results.update(_train_and_record(trainer, training_args.output_dir, resume))
            best = trainer.evaluate(split_for_host(splits["validation"]), prefix="validation")
            results.update(best.metrics)
        eval_split = "test" if "test" in splits else "validation"
        final = None
        if training_args.do_eval:
            if eval_split != "test":
                logger.warning("no test split: the final evaluation uses the validation split")
            final = trainer.evaluate(split_for_host(splits[eval_split]), prefix="eval")
            final.metrics["eval_split"] = eval_split
            results.update(final.metrics)
        baseline_text, baselines = None, {}
        if data_args.dataset_name is None and "test" in splits:  # the main job: the model beside simple baselines
            baselines = classification_baselines(splits["train"], splits["test"], tokenizer.num_channels,
                                                 seed=training_args.seed)
            results.update(baselines)
            baseline_text = ("Simple baselines on the same split (test accuracy): "
                             + "; ".join(baseline_lines(results, num_labels)) + ".")
        if training_args.do_eval:
            _save_results(training_args.output_dir, "eval",
                          {k: v for k, v in results.items() if k.startswith("eval_") or k in baselines})
        if "validation_accuracy" in results:
            _save_results(training_args.output_dir, "validation",
                         {k: v for k, v in results.items() if k.startswith("validation_")})
        _finish_outputs(trainer, model, tokenizer, training_args, model_args, data_args, results, eval_split, final,
                        baseline_text)
    finally:
        trainer.close()
    lines = [f"output: {training_args.output_dir}", data_location(data_args, model_args)]
    if "eval_accuracy" in results:
        lines.append(f"eval_accuracy ({results['eval_split']} split, {results['eval_samples']} samples): "
                     f"{results['eval_accuracy']:.4f}   eval_loss: {results['eval_loss']:.4f}")
    lines += [f"baseline, {line}" for line in baseline_lines(results, num_labels)]
    if "train_runtime" in results:
        lines.append(f"train_runtime: {results['train_runtime']:.1f} s   steps: {results['train_steps']}")
    _print_summary(lines)
    return results


def unigram_gap_baseline(train, validation, tokenizer, collator) -> Dict[str, float]:
    """NLL per predicted event (nats) of a context-free baseline fitted on the training windows: next token
    ~ unigram frequencies (add-one smoothed); next gap ~ exponential with the mean training gap, taken at the
    timestamps' 1 µs resolution (the geometric distribution P(k µs) = (1 - q) q^k, mean q / (1 - q)), which is
    how the model's time_nll is measured too.

    Scored on exactly the events the model predicts: every event after the first of its window, as the
    collator lays them out (special tokens included)."""
    from .trainer import fetch_rows

    def tokens_and_gaps(dataset):
        ids, gaps = [], []
        for start in range(0, len(dataset), 64):
            batch = collator(fetch_rows(dataset, range(start, min(start + 64, len(dataset)))))
            for row_ids, row_t, row_m in zip(batch["input_ids"], batch["timestamps"], batch["attention_mask"]):
                n = int(np.sum(row_m))
                ids.append(np.asarray(row_ids[1:n], np.int64))
                gaps.append(np.diff(np.asarray(row_t[:n], np.int64)).astype(np.float64))  # µs
        return np.concatenate(ids), np.concatenate(gaps)

    train_ids, train_gaps = tokens_and_gaps(train)
    val_ids, val_gaps = tokens_and_gaps(validation)
    counts = np.bincount(train_ids, minlength=tokenizer.vocab_size).astype(np.float64) + 1.0
    log_p = np.log(counts / counts.sum())
    token_nll = float(-np.mean(log_p[val_ids]))
    mean_gap = float(np.mean(train_gaps))
    q = max(mean_gap, 1e-9) / (1.0 + max(mean_gap, 1e-9))  # geometric: mean q / (1 - q) = mean gap (µs)
    time_nll = float(np.mean(-np.log1p(-q) - val_gaps * np.log(q)))  # -log((1-q) q^k)
    return {"baseline_token_nll": token_nll, "baseline_time_nll": time_nll, "baseline_nll": token_nll + time_nll}


def run_next_event_pretraining(model_args: ModelArguments, data_args: DataArguments,
                               training_args: TrainingArguments) -> Dict[str, Any]:
    """Pretrain by next-event prediction (no labels) on a dataset or on windows of raw recordings; reports
    NLL per event (token and time parts) on validation beside a unigram / exponential-gap baseline."""
    from ..auto import auto_class_for_task

    task = TASKS["next-event"]
    if training_args.metric_for_best_model is None:
        training_args.metric_for_best_model = task.default_metric
    resume, signature = _prepare(model_args, data_args, training_args, task.name)
    splits = load_event_datasets(data_args, model_args, training_args.seed)
    sensor_size = splits.pop("sensor_size", None)
    require_train_split(splits, data_args)
    for name, ds in splits.items():
        check_event_columns(ds, name)
    tokenizer = load_tokenizer(model_args, data_args, sensor_size=sensor_size)
    model = load_model(auto_class_for_task(task.name), model_args, tokenizer, training_args.seed)
    check_vocabulary(model.config, tokenizer)
    for name, ds in splits.items():
        check_event_rows(ds, name, tokenizer)
    claim_output_dir(training_args, signature)  # the checks passed: now the folder is made
    collator = make_collator(tokenizer, data_args, task.name)
    train_split = slice_training_split(splits["train"], data_args) if training_args.do_train else None
    trainer = Trainer(model, training_args, train_split, split_for_host(splits["validation"]), collator,
                      augment=None, task=task)
    results: Dict[str, Any] = {}
    try:
        logger.info("model: %s parameters; train %d, validation %d windows; %s", f"{model.num_parameters():,}",
                    len(splits["train"]), len(splits["validation"]), "resuming" if resume else "new run")
        if training_args.do_train:
            results.update(_train_and_record(trainer, training_args.output_dir, resume))
        eval_split = "test" if "test" in splits else "validation"
        if training_args.do_eval:
            final = trainer.evaluate(split_for_host(splits[eval_split]), prefix="eval")
            results.update(final.metrics)
            results["eval_split"] = eval_split
            results.update(unigram_gap_baseline(splits["train"], splits[eval_split], tokenizer, collator))
            _save_results(training_args.output_dir, "eval",
                         {k: v for k, v in results.items() if k.startswith(("eval_", "baseline_"))})
        text = None
        if "baseline_nll" in results:
            text = (f"Context-free baseline on the same events (unigram token frequencies + exponential gaps): "
                    f"{results['baseline_nll']:.4f} nats/event (token {results['baseline_token_nll']:.4f}, "
                    f"time {results['baseline_time_nll']:.4f}).")
        _finish_outputs(trainer, model, tokenizer, training_args, model_args, data_args, results, eval_split,
                        baseline_text=text)
    finally:
        trainer.close()
    lines = [f"output: {training_args.output_dir}", data_location(data_args, model_args)]
    if "eval_loss" in results:
        lines.append(f"NLL per event ({results['eval_split']}, {results.get('eval_predicted_events', 0)} events): "
                     f"{results['eval_loss']:.4f} nats  (token {results.get('eval_token_nll', math.nan):.4f}, "
                     f"time {results.get('eval_time_nll', math.nan):.4f})")
    if "baseline_nll" in results:
        lines.append(f"unigram + exponential-gap baseline: {results['baseline_nll']:.4f} nats  (token "
                     f"{results['baseline_token_nll']:.4f}, time {results['baseline_time_nll']:.4f})")
    _print_summary(lines)
    return results


def run_evaluation(model_args: ModelArguments, data_args: DataArguments,
                   training_args: TrainingArguments) -> Dict[str, Any]:
    """Evaluate --model_name_or_path on the test split (classification: accuracy, loss, confusion matrix;
    next-event: NLL per event). Writes eval_results.json (+ confusion matrix) into output_dir."""
    from ..auto import load_pretrained

    if not model_args.model_name_or_path:
        raise ValueError("run_evaluation needs --model_name_or_path (a model folder or Hub repo id)")
    resolve_presets(model_args, data_args, training_args)
    training_args.output_dir = training_args.output_dir or DEFAULT_OUTPUT_DIRS["evaluation"]
    start_processes(training_args)
    model = load_pretrained(model_args.model_name_or_path, **hub_options(model_args))  # the class config.json names
    task = task_for(model)
    Path(training_args.output_dir).mkdir(parents=True, exist_ok=True)
    splits = load_event_datasets(data_args, model_args, training_args.seed)
    splits.pop("sensor_size", None)
    label = task.label_column(data_args)
    split_name = "test" if "test" in splits else "validation"
    dataset = splits[split_name]
    check_event_columns(dataset, split_name, label)
    tokenizer = load_tokenizer(model_args, data_args)
    check_vocabulary(model.config, tokenizer)
    check_event_rows(dataset, split_name, tokenizer)
    num_labels = task.num_labels(model.config)
    task.check_labels(dataset, split_name, label, num_labels)
    collator = make_collator(tokenizer, data_args, task.name, num_labels)
    trainer = Trainer(model, training_args, None, dataset, collator, task=task)
    try:
        out = trainer.evaluate(split_for_host(dataset), prefix="eval")
    finally:
        trainer.close()
    results = dict(out.metrics, eval_split=split_name)
    _save_results(training_args.output_dir, "eval", results)
    if _is_main():
        task.save_plots(training_args.output_dir, out, model.config, split_name)
    _print_summary([f"output: {training_args.output_dir}", data_location(data_args, model_args),
                    *(f"{k}: {v}" for k, v in results.items())])
    return results
