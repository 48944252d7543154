"""Model cards (model_cards/model_card.md rendered with huggingface_hub.ModelCard) and the Hub upload."""

import fnmatch
import logging
import platform
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import huggingface_hub
import jax
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from ..resources import data_dir
from .tasks import TASKS, task_for

logger = logging.getLogger(__name__)

MODEL_CARD_TEMPLATE = "model_card.md"
# never uploaded: checkpoints (training state), TensorBoard logs, hidden temp files
PUSH_IGNORE = ["checkpoints", "checkpoints/*", "runs", "runs/*", ".*", "*/.*", "**/.*"]

_TRAIN_KEYS = ("num_train_epochs", "max_steps", "per_device_train_batch_size", "gradient_accumulation_steps",
               "ssm_base_lr", "lr_factor", "weight_decay", "ssm_weight_decay", "warmup_epochs",
               "lr_scheduler_type", "seed")


def _fmt(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _versions() -> List[tuple]:
    import importlib.metadata as md

    out = [("python", platform.python_version())]
    for name in ("eventlm", "jax", "flax", "optax", "orbax-checkpoint", "datasets", "huggingface-hub"):
        try:
            out.append((name, md.version(name)))
        except md.PackageNotFoundError:
            continue
    return out


def sensor_tags(tokenizer) -> List[str]:
    size = getattr(tokenizer, "sensor_size", None)
    if size is None:
        return []
    return ["spiking-audio", "neuromorphic-audio"] if size[1] == 1 else ["event-camera", "dvs"]


def build_model_card(
    model,
    task,
    metrics: Dict[str, Any],
    *,
    model_name: str,
    repo_id: Optional[str] = None,
    dataset_name: Optional[str] = None,
    embedded_dataset: str = "synthetic",
    recordings: Optional[Sequence[str]] = None,
    recording_format: Optional[str] = None,
    dataset_split: str = "test",
    tokenizer=None,
    training_args=None,
    base_model: Optional[str] = None,
    baseline_text: Optional[str] = None,
    extra_results: Optional[Dict[str, Any]] = None,
    curves_image: Optional[str] = None,
    confusion_image: Optional[str] = None,
    license: Optional[str] = "apache-2.0",
) -> ModelCard:
    """A ModelCard with YAML metadata (library_name eventlm, tags, datasets, model-index with the measured
    metrics) and a body from model_cards/model_card.md. task: "classification" | "next-event" (or a Task);
    `metrics`: the final evaluation ("eval_accuracy", "eval_loss", ... on `dataset_split`); extra_results: more
    rows for the results table (e.g. validation; a row already given by `metrics` is not repeated). The data:
    `dataset_name` (a Hub repo id or a local folder), else `recordings` (files read with `recording_format`),
    else the embedded synthetic dataset. `base_model` goes into the metadata only when it is a Hub repo id (a
    local folder is named in the text). Tags and settings come from the model and its config; the head's
    fields are the task's own (a next-event card lists no classifier setting)."""
    from ..auto import auto_class_for_task

    task = task_for(task)
    info = task.card
    data = describe_data(dataset_name, recordings, recording_format, embedded_dataset)
    dataset_id = data["id"]
    eval_results, rows = [], []
    for key in task.card_metrics:
        value = metrics.get(f"eval_{key}")
        if isinstance(value, (int, float)):
            eval_results.append(EvalResult(
                task_type=info["task_type"], task_name=info["task_name"], dataset_type=dataset_id,
                dataset_name=dataset_id, dataset_split=dataset_split, metric_type=key,
                metric_name=key + task.metric_unit, metric_value=round(float(value), 6)))
            rows.append({"split": dataset_split, "metric": key, "value": _fmt(float(value))})
    given = {(r["split"], r["metric"]) for r in rows}
    for key, value in (extra_results or {}).items():
        split, _, metric = key.partition("_")
        if isinstance(value, (int, float)) and (split, metric) not in given:
            rows.append({"split": split, "metric": metric, "value": _fmt(value)})
    tags = ["eventlm", model.config.model_type, "neuromorphic", "event-based", "jax", "flax", *sensor_tags(tokenizer)]
    hub_base = base_model if base_model and is_hub_repo_id(base_model) else None
    card_data = ModelCardData(
        library_name="eventlm", license=license, tags=tags, datasets=[dataset_id] if data["on_hub"] else None,
        metrics=[r.metric_type for r in eval_results] or None, model_name=model_name,
        base_model=hub_base, eval_results=eval_results or None)
    config = model.config
    other_heads = {k for t in TASKS.values() if t.name != task.name for k in t.card_config_keys}
    keys = [k for k in config_card_keys(config) if k not in other_heads]
    model_settings = [(k, _fmt(getattr(config, k))) for k in dict.fromkeys((*keys, *task.card_config_keys))
                      if getattr(config, k, None) is not None]
    training_settings = [(k, _fmt(getattr(training_args, k))) for k in _TRAIN_KEYS
                         if training_args is not None and getattr(training_args, k, None) not in (None, -1)]
    template = data_dir("model_cards") / MODEL_CARD_TEMPLATE
    return ModelCard.from_template(
        card_data, template_path=str(template), model_name=model_name, repo_id=repo_id or model_name,
        dataset_name=dataset_name, task=task.name, dataset_display=data["display"], dataset_split=dataset_split,
        base_model_display=(f"`{hub_base}`" if hub_base else
                            f"the local model folder `{Path(base_model).name}`" if base_model else None),
        task_description=info["description"], auto_class=auto_class_for_task(task.name).__name__,
        results_table=rows, baseline_text=baseline_text, curves_image=curves_image,
        confusion_image=confusion_image, model_settings=model_settings, training_settings=training_settings,
        num_parameters=f"{model.num_parameters():,}", versions=_versions(),
        model_description=getattr(config, "card_description", f"an event model ({config.model_type})"),
        optimizer_groups=", ".join(sorted(set(jax.tree_util.tree_leaves(model.param_groups())))))


def is_hub_repo_id(name: str) -> bool:
    """True for a Hub repo id ('user/model'), False for a local folder (an existing path, or one that looks
    like a path: absolute, ./, ~, or more than one '/')."""
    text = str(name)
    if Path(text).expanduser().exists() or text.startswith((".", "/", "~")) or text.count("/") > 1:
        return False
    try:
        huggingface_hub.utils.validate_repo_id(text)
    except huggingface_hub.errors.HFValidationError:
        return False
    return True


def describe_data(dataset_name: Optional[str], recordings: Optional[Sequence[str]] = None,
                  recording_format: Optional[str] = None, embedded_dataset: str = "synthetic") -> Dict[str, Any]:
    """What a card says a run trained on: {"id" (model-index dataset), "display" (the text), "on_hub"}; without a
    dataset name or recordings, the embedded dataset the run built (`embedded_dataset`)."""
    if dataset_name:
        on_hub = is_hub_repo_id(dataset_name)
        name = dataset_name if on_hub else Path(dataset_name).name
        where = f"the Hub dataset `{dataset_name}`" if on_hub else f"the local dataset folder `{name}`"
        return {"id": name, "display": where, "on_hub": on_hub}
    if recordings:
        names = [Path(r).name for r in recordings]
        shown = ", ".join(f"`{n}`" for n in names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        fmt = f" (format {recording_format})" if recording_format else ""
        return {"id": "recordings", "on_hub": False,
                "display": f"{len(names)} raw recording{'s' if len(names) > 1 else ''}{fmt}: {shown}, cut into "
                           f"windows, the end of each held out for validation"}
    module = embedded_dataset.replace("-", "_")
    return {"id": f"eventlm-{embedded_dataset}", "on_hub": False,
            "display": f"the embedded {embedded_dataset} dataset (eventlm.data.{module})"}


def config_card_keys(config) -> List[str]:
    """The model settings a card lists: the config's `card_config_keys` where it names them, else every field
    its class adds to PretrainedConfig."""
    from transformers import PretrainedConfig

    keys = getattr(config, "card_config_keys", None)
    return list(keys) if keys is not None else [k for k in config.to_dict() if k not in PretrainedConfig().to_dict()]


def files_to_push(folder) -> List[str]:
    """Relative paths under `folder` that push_folder_to_hub uploads (PUSH_IGNORE left out)."""
    folder = Path(folder)
    out = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if path.is_file() and not any(fnmatch.fnmatch(rel, pat) or fnmatch.fnmatch(rel.split("/")[0], pat)
                                      for pat in PUSH_IGNORE):
            out.append(rel)
    return out


def push_folder_to_hub(folder, repo_id: str, token: Optional[str] = None, private: Optional[bool] = None,
                       commit_message: str = "Upload a model trained with eventlm"):
    """create_repo (exist_ok) + upload_folder of the model folder: weights, config, tokenizer, card,
    results and pictures; checkpoints and TensorBoard logs stay local."""
    repo = huggingface_hub.create_repo(repo_id, token=token, private=private, exist_ok=True)
    repo_id = getattr(repo, "repo_id", None) or repo_id
    allow = files_to_push(folder)
    logger.info("uploading %d files of %s to %s", len(allow), folder, repo_id)
    return huggingface_hub.upload_folder(repo_id=repo_id, folder_path=str(folder), commit_message=commit_message,
                                         token=token, allow_patterns=allow, ignore_patterns=PUSH_IGNORE)
