"""The training loop of eventlm: one loop for both heads (sequence classification, next-event prediction).

    from eventlm.training import Trainer, train
    results = train(model, train_dataset, eval_dataset, collator, args)     # -> dict of train_* metrics
    trainer = Trainer(model, args, train_dataset, eval_dataset, collator)
    trainer.train(); out = trainer.evaluate(test_dataset, prefix="test")    # out.metrics, out.confusion_matrix

Datasets are anything with len() and integer indexing that yields Hub rows (a `datasets.Dataset` in
numpy format, or a list of dicts). The collator turns a list of rows into a numpy batch (input_ids,
timestamps, attention_mask, labels). `augment(rows, rng) -> rows` runs on training rows only.

Determinism and exact resume: epoch e visits the training rows in the order of a permutation seeded by
(seed, e); the augmentation of batch k of epoch e draws from a Generator seeded by (seed, e, k); the
dropout key of step s is fold_in(key, s). A checkpoint stores the state and (epoch, position), so a
resumed run sees the same batches and keys as an uninterrupted one.

"step" counts training batches (micro-batches): with gradient accumulation k, the optimizer updates
every k steps. Data parallel over all devices (see sharding.py): the global batch of a step is
per_device_train_batch_size x number of devices.

Several processes (jax.distributed, see sharding.py): every process holds the whole training set and the
same seeded epoch order; each reads its contiguous block of every global batch (DataParallel.host_rows),
so the global batches, the losses and the checkpoints do not depend on how many processes share the
devices (a checkpoint written by 2 processes resumes in 1, and the reverse). Evaluation datasets may be
split per process (split_for_host): the metrics are sums over every process's rows.
"""

import json
import logging
import math
import queue
import shutil
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from .checkpoints import CheckpointStore
from .metrics import MetricsLogger
from .optimizer import OptimizerSetup, create_optimizer, scaled_learning_rate
from .sharding import IGNORE_INDEX, DataParallel, agree_on_length, barrier, pad_batch_to_length
from .tasks import EvalOutput, Task, task_for

logger = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
DAMAGED_CHECKPOINT_DIR = "checkpoints-damaged"  # where resume moves checkpoints it cannot read
_STEP_CACHE: Dict[tuple, Callable] = {}  # jitted train / eval steps by what they compute (see Trainer._step_key)
_MAX_INT32 = np.iinfo(np.int32).max


# ----------------------------------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------------------------------


def epoch_order(num_rows: int, batch_size: int, seed: int, epoch: int) -> np.ndarray:
    """Row indices of each full batch of epoch `epoch`: a permutation seeded by (seed, epoch), cut into
    num_rows // batch_size batches (the incomplete tail is dropped, as the reference does)."""
    perm = np.random.default_rng([int(seed), int(epoch)]).permutation(num_rows)
    steps = num_rows // batch_size
    return perm[: steps * batch_size].reshape(steps, batch_size)


def fetch_rows(dataset, indices: Sequence[int]) -> List[Dict[str, Any]]:
    """Rows `indices` of a datasets.Dataset (one columnar read) or of any indexable sequence of rows."""
    indices = [int(i) for i in indices]
    try:
        import datasets

        if isinstance(dataset, datasets.Dataset):
            columns = dataset[indices]
            return [{k: v[i] for k, v in columns.items()} for i in range(len(indices))]
    except ImportError:  # pragma: no cover - datasets is a dependency
        pass
    return [dataset[i] for i in indices]


def prefetch(iterator: Iterator, size: int = 2) -> Iterator:
    """Run `iterator` in a background thread, `size` items ahead (collation overlaps the device step).
    Items keep their order; an exception in the thread is raised here."""
    if size <= 0:
        yield from iterator
        return
    q: "queue.Queue" = queue.Queue(maxsize=size)
    stop = threading.Event()
    done = object()

    def worker():
        try:
            for item in iterator:
                if stop.is_set():
                    return
                q.put(item)
            q.put(done)
        except BaseException as err:  # handed to the consumer
            q.put(err)

    thread = threading.Thread(target=worker, daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a worker waiting on a full queue
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(0.05)


def _host_batch(batch: Dict[str, Any]) -> Dict[str, np.ndarray]:
    """The arrays the device needs, timestamps as int32 µs (jax runs without x64)."""
    out = {}
    for key in ("input_ids", "timestamps", "attention_mask", "labels"):
        if key in batch and batch[key] is not None:
            out[key] = np.asarray(batch[key])
    ts = out["timestamps"]
    if ts.size and (ts.max() > _MAX_INT32 or ts.min() < 0):
        raise ValueError(
            f"timestamps reach {int(ts.max())} µs, beyond int32 ({_MAX_INT32} µs, ~35 min) per sample; "
            f"slice long recordings (--slice_events) before training"
        )
    for key in ("input_ids", "timestamps", "attention_mask"):
        out[key] = out[key].astype(np.int32)
    if "labels" in out:
        labels = out["labels"]
        out["labels"] = labels.astype(np.float32) if labels.dtype.kind == "f" else labels.astype(np.int32)
    return out


# ----------------------------------------------------------------------------------------------------
# the trainer
# ----------------------------------------------------------------------------------------------------


class Trainer:
    """Train and evaluate an eventlm Flax model (FlaxPreTrainedModel API) with optax on a device mesh."""

    def __init__(self, model, args, train_dataset=None, eval_dataset=None, collator=None,
                 augment: Optional[Callable] = None, task=None,
                 parallel: Optional[DataParallel] = None, metrics_logger: Optional[MetricsLogger] = None):
        self.model, self.args = model, args
        self.train_dataset, self.eval_dataset = train_dataset, eval_dataset
        self.collator, self.augment = collator, augment
        # the task: given, else the model's (model.task), else the collator's
        self.task: Task = task_for(task or getattr(model, "task", None) or getattr(collator, "task", None))
        self.parallel = parallel or DataParallel()
        self.output_dir = Path(args.output_dir)
        self.is_main = self.parallel.process_index == 0
        self.logger = metrics_logger or MetricsLogger(
            self.output_dir, tensorboard="tensorboard" in _report_to(args), enabled=self.is_main)
        self.pad_token_id = int(getattr(model.config, "pad_token_id", 0) or 0)
        self.optimizer: Optional[OptimizerSetup] = None
        self.state = None
        self._train_step = self._eval_step = None
        self.best_metric, self.best_step = None, None
        self._store: Optional[CheckpointStore] = None
        self.steps_run = 0  # training steps the last train() call ran (0: the run was already complete)

    # ------------------------------------------------------------------ schedule
    @property
    def metric_name(self) -> str:
        return self.args.metric_for_best_model or self.task.default_metric

    @property
    def greater_is_better(self) -> bool:
        if self.args.greater_is_better is not None:
            return bool(self.args.greater_is_better)
        return not self.metric_name.endswith("loss") and "nll" not in self.metric_name

    def steps_per_epoch(self) -> int:
        global_batch = self.parallel.global_batch_size(self.args.per_device_train_batch_size)
        rows = self._train_rows()
        steps = rows // global_batch
        if steps < 1:
            raise ValueError(
                f"the training set has {rows} rows, fewer than one batch of {global_batch} "
                f"(per_device_train_batch_size x {self.parallel.num_devices} devices); lower the batch size"
            )
        return steps

    def _train_rows(self) -> int:
        """len(train_dataset), checked once to be the same on every process (each holds the whole set)."""
        if getattr(self, "_checked_rows", None) is None:
            rows = len(self.train_dataset)
            if self.parallel.process_count > 1:
                counts = _allgather_int(rows)
                if len(set(counts.tolist())) > 1:
                    raise ValueError(
                        f"the processes hold training sets of different lengths {counts.tolist()}; every process "
                        f"must load the whole training set (the trainer splits each batch itself)")
            self._checked_rows = rows
        return self._checked_rows

    def total_steps(self) -> int:
        """Training batches to run: max_steps x accumulation when max_steps > 0, else epochs x steps/epoch."""
        accumulation = self.args.gradient_accumulation_steps
        if self.args.max_steps and self.args.max_steps > 0:
            return int(self.args.max_steps) * accumulation
        return max(int(math.ceil(self.args.num_train_epochs * self.steps_per_epoch())), accumulation)

    def global_batch_size(self) -> int:
        return self.parallel.global_batch_size(self.args.per_device_train_batch_size) * self.args.gradient_accumulation_steps

    def create_optimizer(self) -> OptimizerSetup:
        args = self.args
        accumulation = args.gradient_accumulation_steps
        updates = max(self.total_steps() // accumulation, 1)
        warmup = int(args.warmup_epochs * self.steps_per_epoch()) // accumulation
        lr = scaled_learning_rate(args.ssm_base_lr, self.global_batch_size()) if args.scale_lr_with_batch \
            else args.ssm_base_lr
        return create_optimizer(
            lr, total_steps=updates, warmup_steps=warmup, lr_factor=args.lr_factor,
            weight_decay=args.weight_decay, ssm_weight_decay=args.ssm_weight_decay,
            schedule=args.lr_scheduler_type, accumulation_steps=accumulation, b1=args.adam_beta1,
            b2=args.adam_beta2, eps=args.adam_epsilon, max_grad_norm=args.max_grad_norm or None,
            labels=self.model.param_groups())

    # ------------------------------------------------------------------ state and steps
    def init_state(self):
        """The training state, replicated over the mesh: step, params, batch_stats, opt_state, rng key."""
        params = self.model.params
        state = {
            "step": jnp.zeros((), jnp.int32),
            "params": params,
            "batch_stats": self.model.batch_stats or {},
            "opt_state": self.optimizer.tx.init(params),
            "rng": jax.random.PRNGKey(self.args.seed),
        }
        return self.parallel.replicate(state)

    def _forward(self, params, batch_stats, batch, train: bool, rng=None, with_labels=True):
        kwargs = dict(params=params, train=train)
        if batch_stats:
            kwargs["batch_stats"] = batch_stats
        if train:
            kwargs["dropout_rng"] = rng
        labels = batch.get("labels") if with_labels else None
        return self.model(batch["input_ids"], batch["timestamps"], batch["attention_mask"], labels=labels, **kwargs)

    def _step_key(self, kind: str) -> tuple:
        """Two trainers whose steps would compile to the same program share one jitted function: same model
        class and config (labels included), task, optimizer hyperparameters and devices (params are arguments)."""
        config = {k: v for k, v in self.model.config.to_dict().items()
                  if not k.startswith("_") and k != "transformers_version"}
        return (kind, type(self.model).__qualname__, json.dumps(config, sort_keys=True, default=str), self.task.name,
                self.optimizer.spec if kind == "train" else None,
                tuple(d.id for d in self.parallel.mesh.devices.flat), id(type(self.model).__call__))

    def _cached_step(self, kind: str, build: Callable):
        key = self._step_key(kind)
        if key not in _STEP_CACHE:
            if len(_STEP_CACHE) >= 8:
                _STEP_CACHE.pop(next(iter(_STEP_CACHE)))
            _STEP_CACHE[key] = build()
        return _STEP_CACHE[key]

    def _build_train_step(self):
        return self._cached_step("train", self._compile_train_step)

    def _compile_train_step(self):
        tx = self.optimizer.tx

        def train_step(state, batch):
            rng = jax.random.fold_in(state["rng"], state["step"])  # dropout key of this step

            def loss_fn(params):
                out = self._forward(params, state["batch_stats"], batch, train=True, rng=rng)
                return out.loss, out

            (loss, out), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
            updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
            new_stats = getattr(out, "batch_stats", None)
            new_state = dict(state, step=state["step"] + 1, params=optax.apply_updates(state["params"], updates),
                             opt_state=opt_state,
                             batch_stats=new_stats if (state["batch_stats"] and new_stats is not None)
                             else state["batch_stats"])
            return new_state, self.task.step_metrics(out, batch)

        rep = self.parallel.replicated
        return jax.jit(train_step, out_shardings=(jax.tree_util.tree_map(lambda _: rep, self.state), rep))

    def _compile_eval_step(self):
        def eval_step(params, batch_stats, batch):
            def forward(with_labels):
                return self._forward(params, batch_stats, batch, train=False, with_labels=with_labels)

            weight = batch["sample_weight"]
            sums = self.task.eval_sums(forward, batch)
            return dict(sums, count=jnp.sum(weight), events=jnp.sum(batch["attention_mask"] * weight[:, None]))

        return jax.jit(eval_step, out_shardings=self.parallel.replicated)

    # ------------------------------------------------------------------ batches
    def _collate(self, rows) -> Dict[str, np.ndarray]:
        """This process's rows -> its numpy batch (no communication: this runs in the prefetch thread)."""
        return _host_batch(self.collator(rows))

    def _global_batch(self, batch: Dict[str, np.ndarray]):
        """The numpy batch padded to the longest of all processes' batches, as global arrays over the mesh.
        Runs on the main thread: a collective from the prefetch thread could pair with another collective
        (a checkpoint's barrier) of another process."""
        length = agree_on_length(batch["input_ids"].shape[1])
        return self.parallel.shard_batch(pad_batch_to_length(batch, length, self.pad_token_id))

    def _train_batches(self, epoch: int, start: int) -> Iterator:
        """(position, numpy batch) of epoch `epoch` from batch `start` on: this process's rows of each global batch."""
        global_batch = self.parallel.global_batch_size(self.args.per_device_train_batch_size)
        order = epoch_order(self._train_rows(), global_batch, self.args.seed, epoch)[: self.steps_per_epoch()]
        for position in range(start, len(order)):
            rows = fetch_rows(self.train_dataset, self.parallel.host_rows(order[position]))
            if self.augment is not None:  # seeded per (seed, host, epoch, batch): the same on resume
                rng = np.random.default_rng([self.args.seed, self.parallel.process_index, epoch, position])
                rows = self.augment(rows, rng)
            yield position, self._collate(rows)

    def _eval_batches(self, dataset) -> Iterator[Dict[str, np.ndarray]]:
        """Batches over every row; the last one is filled with fully masked rows of weight 0."""
        local_batch = self.parallel.local_batch_size(self.args.per_device_eval_batch_size)
        rows_total = len(dataset)
        per_host = rows_total if self.parallel.process_count == 1 else int(np.max(_allgather_int(rows_total)))
        for start in range(0, per_host, local_batch):
            rows = fetch_rows(dataset, range(start, min(start + local_batch, rows_total)))
            real = len(rows)
            if real == 0:  # this host ran out while another still evaluates
                rows = fetch_rows(dataset, [0])
            while len(rows) < local_batch:
                rows.append(rows[0])
            batch = self._collate(rows)
            weight = np.zeros(local_batch, np.float32)
            weight[:real] = 1.0
            batch["attention_mask"] = batch["attention_mask"] * (weight[:, None] > 0)
            labels = batch.get("labels")
            if labels is not None and labels.shape == batch["input_ids"].shape:  # next-event targets
                batch["labels"] = np.where(batch["attention_mask"] > 0, labels, IGNORE_INDEX).astype(labels.dtype)
            batch["sample_weight"] = weight
            yield batch

    # ------------------------------------------------------------------ checkpoints
    def _meta(self, step: int, epoch: int, position: int) -> Dict[str, Any]:
        steps_per_epoch = self.steps_per_epoch()
        if position >= steps_per_epoch:
            epoch, position = epoch + 1, 0
        return {"step": int(step), "epoch": int(epoch), "position": int(position),
                "steps_per_epoch": int(steps_per_epoch), "best_metric": self.best_metric,
                "best_step": self.best_step, "metric": self.metric_name, "seed": int(self.args.seed)}

    def _checkpoints(self) -> CheckpointStore:
        if self._store is None:
            self._store = CheckpointStore(
                self.output_dir / CHECKPOINT_DIR, metric=self.metric_name,
                mode="max" if self.greater_is_better else "min",
                keep_latest=max(int(self.args.save_total_limit or 1), 1), async_save=self.args.async_checkpointing)
        return self._store

    def _restore_latest(self):
        """(step, epoch, position) of the newest intact checkpoint, restored into self.state; a damaged newer
        one (unreadable files, implausible metadata) is moved to checkpoints-damaged/ with a warning."""
        store = self._checkpoints()
        latest = store.latest_step()
        if latest is None:
            self.best_metric, self.best_step = None, None
            return 0, 0, 0
        damaged = []
        for latest in sorted(store.manager.all_steps(), reverse=True):
            try:
                state, meta = store.restore(latest, self.state)
                self._check_resume_meta(meta, latest, store.directory)
            except _ResumeMismatch:
                raise
            except Exception as err:  # tensorstore / JSON / orbax errors of a damaged checkpoint
                reason = " ".join(str(err).split())[:300]
                damaged.append(latest)
                logger.warning("checkpoint step %d in %s is damaged (%s: %s); moving it to %s and resuming from the "
                               "one before", latest, store.directory, type(err).__name__, reason,
                               store.directory.parent / DAMAGED_CHECKPOINT_DIR)
                continue
            break
        else:
            raise ValueError(f"no intact checkpoint in {store.directory}: every one ({damaged}) is damaged; start "
                             "again with --overwrite_output_dir (or a new --output_dir)")
        if damaged:
            self._set_aside(store, damaged)
        self.state = state
        self.best_metric, self.best_step = meta.get("best_metric"), meta.get("best_step")
        if self.best_step is not None and self.best_step in damaged:
            self.best_metric, self.best_step = None, None
        logger.info("resuming from checkpoint step %d (epoch %d, batch %d)", latest, meta["epoch"], meta["position"])
        return int(meta["step"]), int(meta["epoch"]), int(meta["position"])

    def _check_resume_meta(self, meta, step: int, directory) -> None:
        """The data position a checkpoint records must fit this run; a different epoch length is the user's
        change (_ResumeMismatch), impossible values are damage (ValueError)."""
        spe = self.steps_per_epoch()
        if meta.get("steps_per_epoch") != spe:
            raise _ResumeMismatch(
                f"the checkpoint in {directory} was written with {meta.get('steps_per_epoch')} steps per "
                f"epoch, this run has {spe} (a different dataset or batch size); use a new "
                f"--output_dir or --overwrite_output_dir"
            )
        fields = [meta.get(k) for k in ("step", "epoch", "position")]
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in fields):
            raise ValueError(f"its metadata holds step/epoch/position {fields}, not integers")
        m_step, epoch, position = fields
        if m_step != step or epoch < 0 or not 0 <= position < spe or epoch * spe + position != step:
            raise ValueError(f"its metadata (step {m_step}, epoch {epoch}, position {position}, {spe} steps per "
                             f"epoch) does not describe step {step}")

    def _set_aside(self, store, steps) -> None:
        """Move damaged checkpoints out of the store (a rename: nothing is deleted) and reopen it."""
        aside = store.directory.parent / DAMAGED_CHECKPOINT_DIR
        self.close_checkpoints()
        if not self.is_main:
            return
        aside.mkdir(exist_ok=True)
        for step in steps:
            source = store.directory / str(step)
            if source.exists():
                target = aside / f"{step}-{time.strftime('%Y%m%d-%H%M%S')}"
                source.rename(target)

    # ------------------------------------------------------------------ train
    def train(self, resume: bool = True) -> Dict[str, float]:
        """Run the training loop; returns HF-style train metrics. With resume=True a checkpoint in
        output_dir/checkpoints is continued exactly. At the end the model holds the parameters of the
        best validation checkpoint (load_best_model_at_end) or of the last step."""
        if self.train_dataset is None or self.collator is None:
            raise ValueError("Trainer.train needs a train_dataset and a collator")
        args = self.args
        if self.optimizer is None:
            self.optimizer = self.create_optimizer()
        self.state = self.init_state()
        if not resume:
            self.close_checkpoints()
            if self.is_main and (self.output_dir / CHECKPOINT_DIR).exists():
                shutil.rmtree(self.output_dir / CHECKPOINT_DIR)
            barrier("eventlm-fresh-start")  # no process opens the checkpoints before process 0 removed them
        step, epoch, position = self._restore_latest()
        self.logger.truncate_after(step)  # records of steps after the restored state are re-logged
        total = self.total_steps()
        steps_per_epoch = self.steps_per_epoch()
        if self._train_step is None:  # compiled once per trainer (a second train() call reuses it)
            self._train_step = self._build_train_step()
        eval_every = self._eval_interval(steps_per_epoch)
        start_step, t0 = step, time.perf_counter()
        window: List[Dict[str, float]] = []
        events_seen, pending = 0, None
        bar = tqdm(total=total, initial=step, disable=args.disable_tqdm or not self.is_main, dynamic_ncols=True,
                   desc="train", unit="step")
        try:
            while step < total:
                for position, host_batch in prefetch(self._train_batches(epoch, position), args.prefetch_batches):
                    if step >= total:
                        break
                    tick = time.perf_counter()
                    batch = self._global_batch(host_batch)
                    self.state, metrics = self._train_step(self.state, batch)
                    step += 1
                    if pending is not None:  # read the previous step's numbers while this one runs
                        window.append(self._finish_step(*pending, bar))
                    pending = (metrics, int(host_batch["attention_mask"].sum()) * self.parallel.process_count, tick, step)
                    events_seen += pending[1]
                    at_epoch_end = position + 1 == steps_per_epoch
                    log_now = step % max(args.logging_steps, 1) == 0 or step == total or at_epoch_end
                    evaluate_now = self.eval_dataset is not None and (
                        (eval_every and step % eval_every == 0) or step == total)
                    save_now = evaluate_now or (args.save_steps and step % args.save_steps == 0) or step == total
                    if log_now or evaluate_now or save_now:
                        window.append(self._finish_step(*pending, bar))
                        pending = None
                    if log_now and window:
                        self._log_train(window, step, epoch + (position + 1) / steps_per_epoch)
                        window = []
                    eval_metrics = self._evaluate_during_training(step, epoch, position) if evaluate_now else None
                    if save_now:
                        self._checkpoints().save(step, self.state, self._meta(step, epoch, position + 1),
                                                 metrics=eval_metrics)
                else:
                    epoch, position = epoch + 1, 0
                    continue
                break
        except jax.errors.JaxRuntimeError as err:
            if self.parallel.process_count > 1:
                raise self._peer_lost(err) from err
            raise
        finally:
            bar.close()
            if self._store is not None:
                self._store.wait()
        runtime = time.perf_counter() - t0
        best = self._checkpoints().best_step() if self.best_step is not None else None
        if args.load_best_model_at_end and best is not None:
            self.best_step = best
            self._export_state_to_model(self._checkpoints().restore(best, self.state)[0])
        else:
            self._export_state_to_model()
        done = max(step - start_step, 0)
        self.steps_run = done
        samples = done * self.parallel.global_batch_size(args.per_device_train_batch_size)
        records = [r for r in self.logger.records() if r.get("split") == "train"] if self.is_main else []
        return {
            "train_loss": float(np.mean([r["loss"] for r in records])) if records else float("nan"),
            "train_runtime": round(runtime, 3),
            "train_samples": int(self._train_rows()),
            "train_steps": int(step),
            "train_samples_per_second": round(samples / max(runtime, 1e-9), 3),
            "train_steps_per_second": round(done / max(runtime, 1e-9), 3),
            "train_events_per_second": round(events_seen / max(runtime, 1e-9), 1),
            "epoch": round(step / steps_per_epoch, 4),
            "best_step": self.best_step,
            f"best_validation_{self.metric_name}": self.best_metric,
        }

    def _peer_lost(self, err: Exception) -> RuntimeError:
        """The one line a process prints when a collective with the other processes fails mid-run."""
        latest = self._store.latest_step() if self._store is not None else None
        reason = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        where = f"step {latest}" if latest is not None else "the start (no checkpoint yet)"
        return RuntimeError(
            f"process {self.parallel.process_index} of {self.parallel.process_count}: a step shared with the other "
            f"processes failed ({reason}); another process has probably stopped (its output says why). Start all "
            f"{self.parallel.process_count} processes again with the same arguments: they resume from {where}")

    def _eval_interval(self, steps_per_epoch: int) -> int:
        strategy = self.args.eval_strategy
        if strategy == "epoch":
            return steps_per_epoch
        if strategy == "steps":
            if not self.args.eval_steps or self.args.eval_steps < 1:
                raise ValueError(f"eval_strategy='steps' needs eval_steps >= 1, got {self.args.eval_steps}")
            return int(self.args.eval_steps)
        if strategy == "no":
            return 0
        raise ValueError(f"eval_strategy must be 'epoch', 'steps' or 'no', got {strategy!r}")

    def _finish_step(self, metrics, events, tick, step, bar) -> Dict[str, float]:
        values = {k: float(v) for k, v in jax.device_get(metrics).items()}
        if not math.isfinite(values["loss"]):
            raise FloatingPointError(
                f"the training loss became {values['loss']} at step {step}; lower the learning rate "
                f"(--ssm_base_lr) or check the inputs"
            )
        elapsed = time.perf_counter() - tick
        values["events_per_second"] = events / max(elapsed, 1e-9)
        bar.update(1)
        postfix = {"loss": f"{values['loss']:.4f}"}
        if "accuracy" in values:
            postfix["acc"] = f"{values['accuracy']:.3f}"
        postfix["ev/s"] = f"{values['events_per_second']:.3g}"
        bar.set_postfix(postfix, refresh=False)
        return values

    def _log_train(self, window, step, epoch) -> None:
        record = {k: float(np.mean([w[k] for w in window])) for k in window[0]}
        update = step // self.args.gradient_accumulation_steps
        record["learning_rate"] = self.optimizer.learning_rate(update)
        self.logger.log("train", step, record, epoch=epoch)

    def _evaluate_during_training(self, step, epoch, position) -> Dict[str, float]:
        out = self.evaluate(self.eval_dataset, prefix="validation", params=self.state["params"],
                            batch_stats=self.state["batch_stats"], log=False)
        metrics = {k[len("validation_"):]: v for k, v in out.metrics.items() if isinstance(v, (int, float))}
        value = metrics.get(self.metric_name)
        if value is None:
            raise ValueError(f"metric_for_best_model {self.metric_name!r} is not among {sorted(metrics)}")
        # ties go to the later step, as the checkpoint store's BestN policy keeps the later one
        better = self.best_metric is None or (value >= self.best_metric if self.greater_is_better
                                              else value <= self.best_metric)
        if better:
            self.best_metric, self.best_step = float(value), int(step)
        epoch_now = epoch + (position + 1) / self.steps_per_epoch()
        self.logger.log("validation", step, metrics, epoch=epoch_now)
        if self.is_main:
            shown = " ".join(f"{k}={v:.4f}" for k, v in metrics.items() if k in self.task.curve_metrics)
            message = f"step {step} (epoch {epoch_now:.2f}) validation: {shown}"
            tqdm.write(message) if not self.args.disable_tqdm else logger.info(message)
        return metrics

    def _export_state_to_model(self, state=None) -> None:
        state = state if state is not None else self.state
        self.model.params = jax.device_get(state["params"])
        if state["batch_stats"]:
            self.model.batch_stats = jax.device_get(state["batch_stats"])

    # ------------------------------------------------------------------ evaluate
    def evaluate(self, dataset=None, prefix: str = "eval", params=None, batch_stats=None, log: bool = True) -> EvalOutput:
        """The task's metrics (classification: loss, accuracy, confusion matrix; next-event: NLL per event)
        over every row of `dataset`, with the model's parameters unless `params` are given."""
        dataset = dataset if dataset is not None else self.eval_dataset
        if dataset is None or len(dataset) == 0:
            raise ValueError(f"evaluate needs a non-empty dataset for {prefix!r}")
        if self.collator is None:
            raise ValueError("evaluate needs a collator")
        if self._eval_step is None:
            self._eval_step = self._cached_step("eval", self._compile_eval_step)
        if params is None:
            params = self.parallel.replicate(self.model.params)
            batch_stats = self.parallel.replicate(self.model.batch_stats or {})
        t0 = time.perf_counter()
        totals: Dict[str, Any] = {}
        for host_batch in prefetch(self._eval_batches(dataset), self.args.prefetch_batches):
            sums = jax.device_get(self._eval_step(params, batch_stats, self._global_batch(host_batch)))
            for key, value in sums.items():
                totals[key] = totals.get(key, 0) + np.asarray(value, np.float64)
        runtime = time.perf_counter() - t0
        out = self.task.final_metrics(totals, prefix)
        metrics = out.metrics
        metrics[f"{prefix}_samples"] = int(round(float(totals["count"])))
        metrics[f"{prefix}_runtime"] = round(runtime, 3)
        metrics[f"{prefix}_events_per_second"] = round(float(totals["events"]) / max(runtime, 1e-9), 1)
        if log:
            self.logger.log(prefix, int(self.state["step"]) if self.state is not None else 0,
                            {k[len(prefix) + 1:]: v for k, v in metrics.items()})
        return out

    def close_checkpoints(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def close(self) -> None:
        self.close_checkpoints()
        self.logger.close()


# ----------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------


class _ResumeMismatch(ValueError):
    """A checkpoint of another data setup (not damage): refused, no fallback."""


def _allgather_int(value: int) -> np.ndarray:
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(np.asarray(value, np.int64)))


def _report_to(args) -> List[str]:
    report = getattr(args, "report_to", None) or []
    return [report] if isinstance(report, str) else list(report)


def train(model, train_dataset, eval_dataset, collator, args, **kwargs) -> Dict[str, float]:
    """Train `model` (in place; it ends with the best validation parameters) and return the train metrics."""
    trainer = Trainer(model, args, train_dataset, eval_dataset, collator, **kwargs)
    try:
        return trainer.train()
    finally:
        trainer.close()
