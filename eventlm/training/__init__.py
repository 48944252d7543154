"""eventlm.training: the loop, tasks (classification, next-event), optimizer groups, data parallelism,
checkpoints, metrics, cards.

    from eventlm.training import Trainer, TrainingArguments, train
    from eventlm.training import run_classification, run_next_event_pretraining, run_evaluation

Names are imported lazily (importing eventlm.training does not import jax until a name is used).
"""

from eventlm._lazy import lazy_exports

_EXPORTS = {
    "Trainer": ".trainer",
    "EvalOutput": ".trainer",
    "TASKS": ".tasks",
    "task_for": ".tasks",
    "train": ".trainer",
    "TrainingArguments": ".arguments",
    "ModelArguments": ".arguments",
    "DataArguments": ".arguments",
    "TASK_PRESETS": ".arguments",
    "parse_args": ".arguments",
    "create_optimizer": ".optimizer",
    "param_labels": ".optimizer",
    "DataParallel": ".sharding",
    "CheckpointStore": ".checkpoints",
    "MetricsLogger": ".metrics",
    "confusion_matrix": ".metrics",
    "build_model_card": ".card",
    "push_folder_to_hub": ".card",
    "run_classification": ".pipelines",
    "run_next_event_pretraining": ".pipelines",
    "run_evaluation": ".pipelines",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS, globals())
