"""Training tasks as objects: what sequence classification and next-event prediction add to the shared loop.

    from eventlm.training.tasks import task_for
    task = task_for(model)   # from model.task ("classification" | "next-event"); or task_for("next-event")

A task owns its labels (the dataset column, their number and check), the metrics of a training step,
the per-batch sums of the evaluation step and the final metrics from them, the metric that selects the
best model, the curves and other pictures it draws, and its section of the model card. The Trainer, the
jobs and the card ask the task; none of them branches on a task's name.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .metrics import accuracy_from_confusion, write_json_atomic
from .plots import plot_confusion_matrix


@dataclass
class EvalOutput:
    """What `Trainer.evaluate` returns: HF-style metrics ("{prefix}_loss", "{prefix}_accuracy", ...) and,
    for classification, the confusion matrix (rows: true class, columns: predicted class)."""

    metrics: Dict[str, float]
    confusion_matrix: Optional[np.ndarray] = None


class Task:
    """Base of the tasks (stateless; one instance each in TASKS)."""

    name: str = ""
    default_metric = "loss"  # metric_for_best_model when none is given
    curve_metrics: Tuple[str, ...] = ("loss",)  # panels of training_curves.png; shown after each validation
    card = dict(task_type="other", task_name="", description="")  # the model card's task section
    card_metrics: Tuple[str, ...] = ("loss",)  # eval_* metrics in the card's model-index
    metric_unit = ""  # appended to the card's metric names
    card_config_keys: Tuple[str, ...] = ()  # the head's own config fields (a card lists no other head's)

    def label_column(self, data_args) -> Optional[str]:
        """The dataset column this task needs besides the events (None: unlabelled)."""
        return None

    def num_labels(self, config) -> Optional[int]:
        return None

    def check_labels(self, dataset, split: str, label_column: Optional[str], num_labels: Optional[int]) -> None:
        """Raise ValueError naming the first bad label of `dataset`."""

    def step_metrics(self, out, batch) -> Dict:
        """The numbers of one training step (inside jit; `out`: the model's output with the loss)."""
        raise NotImplementedError

    def eval_sums(self, forward: Callable, batch) -> Dict:
        """Sums over the batch's samples (weight batch["sample_weight"]) that evaluate() adds up;
        forward(with_labels) runs the model."""
        raise NotImplementedError

    def final_metrics(self, totals: Dict[str, np.ndarray], prefix: str) -> EvalOutput:
        """The metrics ("{prefix}_...") from the summed eval_sums (plus "count" and "events")."""
        raise NotImplementedError

    def save_plots(self, output_dir, evaluation: Optional[EvalOutput], config, split: str) -> Optional[Path]:
        """Write the task's pictures of a final evaluation into output_dir; the one the card shows, or None."""
        return None

    # curve metric -> the run result of its baseline, drawn on the curves as a reference level (next-event: the
    # context-free NLL of the final evaluation's events; the classifier's bag-of-channels accuracy stays in the
    # card's text: a test-split number beside validation points would read as one of them)
    baseline_keys: Dict[str, str] = {}

    def curve_baselines(self, results: Dict[str, Any]) -> Dict[str, float]:
        """{curve metric: its baseline's value} of the run's results (where the run measured one)."""
        return {m: float(results[k]) for m, k in self.baseline_keys.items() if isinstance(results.get(k), (int, float))}


def _hard_labels(labels):
    """Class indices from integer labels (B,) or soft labels (B, C) (CutMix)."""
    return jnp.argmax(labels, -1) if labels.ndim == 2 else labels


class ClassificationTask(Task):
    """Sequence classification: accuracy, loss and the confusion matrix."""

    name = "classification"
    default_metric = "accuracy"
    curve_metrics = ("loss", "accuracy")
    card = dict(task_type="other", task_name="Event stream classification",
                description="classification of event streams")
    card_metrics = ("accuracy", "loss")
    card_config_keys = ("num_labels", "classifier_pooling", "classification_loss")

    def label_column(self, data_args) -> Optional[str]:
        return data_args.label_column_name

    def num_labels(self, config) -> Optional[int]:
        return config.num_labels

    def check_labels(self, dataset, split, label_column, num_labels) -> None:
        """Every label must be an integer in [0, num_labels)."""
        labels = np.asarray(dataset[label_column])
        if labels.ndim != 1:
            raise ValueError(f"the {split!r} split's {label_column!r} column must hold one class per sample")
        if labels.dtype.kind not in "iu":
            raise ValueError(f"the {split!r} split's {label_column!r} column holds {labels.dtype}, not integer classes")
        bad = np.flatnonzero((labels < 0) | (labels >= num_labels))
        if bad.size:
            i = int(bad[0])
            raise ValueError(
                f"the {split!r} split has label {int(labels[i])} at row {i}, outside 0..{num_labels - 1} "
                f"(num_labels={num_labels}); {bad.size} row(s) are affected"
            )

    def step_metrics(self, out, batch):
        return {"loss": out.loss, "accuracy": jnp.mean(jnp.argmax(out.logits, -1) == _hard_labels(batch["labels"]))}

    def eval_sums(self, forward, batch):
        out = forward(with_labels=False)
        weight, labels = batch["sample_weight"], _hard_labels(batch["labels"])
        num_labels = out.logits.shape[-1]
        # cross-entropy per sample: logsumexp(z) - z[y]
        losses = optax.softmax_cross_entropy_with_integer_labels(out.logits.astype(jnp.float32), labels)
        onehot = jax.nn.one_hot(labels, num_labels) * weight[:, None]
        return {"loss_sum": jnp.sum(losses * weight),
                "confusion": onehot.T @ jax.nn.one_hot(jnp.argmax(out.logits, -1), num_labels)}  # (C, C) counts

    def final_metrics(self, totals, prefix):
        confusion = np.rint(totals["confusion"]).astype(np.int64)
        return EvalOutput(metrics={f"{prefix}_loss": float(totals["loss_sum"] / float(totals["count"])),
                                   f"{prefix}_accuracy": accuracy_from_confusion(confusion)},
                          confusion_matrix=confusion)

    def save_plots(self, output_dir, evaluation, config, split):
        """confusion_matrix.json and .png (class names from config.id2label)."""
        confusion = getattr(evaluation, "confusion_matrix", None)
        if confusion is None:
            return None
        names = [str(config.id2label.get(i, i)) for i in range(confusion.shape[0])]
        write_json_atomic(Path(output_dir) / "confusion_matrix.json",
                          {"split": split, "labels": names, "matrix": confusion.tolist()})
        return plot_confusion_matrix(confusion, Path(output_dir) / "confusion_matrix.png", names,
                                     title=f"confusion matrix ({split})")


class NextEventTask(Task):
    """Next-event prediction: negative log-likelihood per predicted event (nats), token and time parts."""

    name = "next-event"
    curve_metrics = ("loss", "token_nll", "time_nll")
    card = dict(task_type="other", task_name="Next-event prediction",
                description="next-event prediction (the next event's channel and time gap)")
    card_metrics = ("loss", "token_nll", "time_nll")
    metric_unit = " (nats/event)"
    card_config_keys = ("num_mixture_components",)
    baseline_keys = {"loss": "baseline_nll", "token_nll": "baseline_token_nll", "time_nll": "baseline_time_nll"}
    _NLL = ("loss", "token_nll", "time_nll")

    def step_metrics(self, out, batch):
        """The model's NLLs: means over the batch's predicted events (next_event_loss)."""
        return {name: getattr(out, name) for name in self._NLL if getattr(out, name, None) is not None}

    def eval_sums(self, forward, batch):
        """Each NLL (a mean over the predicted events) times the number of predicted events."""
        out = forward(with_labels=True)
        n = jnp.sum(jnp.maximum(jnp.sum(batch["attention_mask"], -1) - 1, 0) * batch["sample_weight"])
        return {"predicted": n, **{f"{name}_sum": value * n for name, value in self.step_metrics(out, batch).items()}}

    def final_metrics(self, totals, prefix):
        predicted = max(float(totals["predicted"]), 1.0)
        metrics = {f"{prefix}_{name}": float(totals[f"{name}_sum"] / predicted)
                   for name in self._NLL if f"{name}_sum" in totals}
        metrics[f"{prefix}_predicted_events"] = int(totals["predicted"])
        return EvalOutput(metrics=metrics)


TASKS: Dict[str, Task] = {"classification": ClassificationTask(), "next-event": NextEventTask()}


def task_for(source) -> Task:
    """The Task of a name ("classification" | "next-event"), of a Task, or of an object with a `task`
    attribute (a model, a collator)."""
    name = source if isinstance(source, (str, Task)) or source is None else getattr(source, "task", None)
    if isinstance(name, Task):
        return name
    if name not in TASKS:
        raise ValueError(f"task must be one of {sorted(TASKS)}, got {name!r} (a model without a head has no task: "
                         "use a ...ForSequenceClassification or ...ForNextEventPrediction model)")
    return TASKS[name]
