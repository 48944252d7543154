"""Tests of eventlm.training: optimizer groups and schedule, checkpoints, metrics, the loop (determinism,
data parallel, exact resume after SIGKILL), pretrain -> fine-tune, bad input."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from eventlm.training import optimizer as opt_lib  # noqa: E402
from eventlm.training.arguments import (DataArguments, ModelArguments, TrainingArguments,  # noqa: E402
                                        parse_args, parse_config_overrides, resolve_presets)
from eventlm.training.checkpoints import CheckpointStore  # noqa: E402
from eventlm.training.metrics import (MetricsLogger, accuracy_from_confusion, confusion_matrix,  # noqa: E402
                                      read_jsonl, save_results)
from eventlm.training.trainer import epoch_order, prefetch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------------------------------
# optimizer
# ----------------------------------------------------------------------------------------------------


def _params(rng):
    return {
        "eventssm": {
            "embed": {"embedding": jnp.asarray(rng.normal(size=(5, 3)), jnp.float32)},
            "layer_0": {"ssm": {"Lambda_re": jnp.asarray(rng.normal(size=(4,)), jnp.float32),
                                "Lambda_im": jnp.asarray(rng.normal(size=(4,)), jnp.float32),
                                "B": jnp.asarray(rng.normal(size=(4, 3, 2)), jnp.float32),
                                "C": jnp.asarray(rng.normal(size=(3, 4, 2)), jnp.float32),
                                "log_step": jnp.asarray(rng.normal(size=(4,)), jnp.float32)},
                        "norm": {"scale": jnp.asarray(rng.normal(size=(3,)), jnp.float32)}},
        },
        "classifier": {"kernel": jnp.asarray(rng.normal(size=(3, 2)), jnp.float32)},
    }


def test_param_labels_follow_reference_groups():
    labels = opt_lib.param_labels(_params(np.random.default_rng(0)))
    ssm = labels["eventssm"]["layer_0"]["ssm"]
    assert ssm["Lambda_re"] == ssm["Lambda_im"] == ssm["B"] == "ssm"
    # the reference puts C, log_step, norms, embedding and heads in the regular group
    assert ssm["C"] == ssm["log_step"] == "regular"
    assert labels["eventssm"]["embed"]["embedding"] == labels["classifier"]["kernel"] == "regular"
    assert opt_lib.count_groups(_params(np.random.default_rng(0))) == (4 + 4 + 24, 15 + 24 + 4 + 3 + 6)


def _schedule_ref(step, peak, total, warmup):
    """Linear warm-up then cosine to zero, written out (float64)."""
    if step < warmup:
        return peak * step / warmup
    return peak * 0.5 * (1 + np.cos(np.pi * min(step - warmup, total - warmup) / (total - warmup)))


def test_schedule_warmup_then_cosine():
    fn = opt_lib.learning_rate_schedule(2e-3, total_steps=50, warmup_steps=10)
    for s in (0, 1, 5, 9, 10, 11, 30, 49, 50, 60):
        assert float(fn(s)) == pytest.approx(_schedule_ref(s, 2e-3, 50, 10), rel=1e-5, abs=1e-9)
    const = opt_lib.learning_rate_schedule(1e-3, 20, 4, "constant")
    assert float(const(2)) == pytest.approx(5e-4) and float(const(15)) == pytest.approx(1e-3)
    with pytest.raises(ValueError, match="schedule"):
        opt_lib.learning_rate_schedule(1e-3, 10, 1, "linear-ish")


def test_scaled_learning_rate():
    # reference: ssm_lr = ssm_base_lr x per-device batch x devices x accumulation
    assert opt_lib.scaled_learning_rate(1.7e-5, 32 * 1 * 1) == pytest.approx(5.44e-4)
    assert opt_lib.scaled_learning_rate(1.2e-5, 16 * 4 * 4) == pytest.approx(1.2e-5 * 256)
    with pytest.raises(ValueError):
        opt_lib.scaled_learning_rate(0.0, 8)


def _adamw_reference(params, grads_seq, lr_fn, wd, b1=0.9, b2=0.999, eps=1e-8):
    """Float64 AdamW (decoupled weight decay scaled by the learning rate), one leaf at a time."""
    p = np.asarray(params, np.float64)
    m = np.zeros_like(p)
    v = np.zeros_like(p)
    for t, g in enumerate(grads_seq, start=1):
        g = np.asarray(g, np.float64)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        mhat, vhat = m / (1 - b1 ** t), v / (1 - b2 ** t)
        p = p - lr_fn(t - 1) * (mhat / (np.sqrt(vhat) + eps) + wd * p)
    return p


def test_two_group_adamw_matches_float64_reference():
    rng = np.random.default_rng(1)
    params = _params(rng)
    steps, warmup, lr, factor, wd = 6, 2, 1e-2, 10.0, 0.05
    setup = opt_lib.create_optimizer(lr, total_steps=steps, warmup_steps=warmup, lr_factor=factor, weight_decay=wd,
                                     ssm_weight_decay=0.0)
    grads_seq = [jax.tree_util.tree_map(lambda x: jnp.asarray(rng.normal(size=x.shape), jnp.float32), params)
                 for _ in range(steps)]
    state, p = setup.tx.init(params), params
    update = jax.jit(setup.tx.update)  # one compilation instead of hundreds of eager ops
    for g in grads_seq:
        updates, state = update(g, state, p)
        p = jax.tree_util.tree_map(lambda a, b: a + b, p, updates)
    labels = opt_lib.param_labels(params)
    flat_p0, tree = jax.tree_util.tree_flatten(params)
    flat_out = jax.tree_util.tree_leaves(p)
    flat_labels = jax.tree_util.tree_leaves(labels)
    flat_grads = [jax.tree_util.tree_leaves(g) for g in grads_seq]
    for i, (p0, out, label) in enumerate(zip(flat_p0, flat_out, flat_labels)):
        peak = lr if label == "ssm" else lr * factor
        ref = _adamw_reference(p0, [g[i] for g in flat_grads], lambda s: _schedule_ref(s, peak, steps, warmup),
                               0.0 if label == "ssm" else wd)
        np.testing.assert_allclose(np.asarray(out), ref, rtol=2e-5, atol=2e-6)


def test_gradient_accumulation_averages_micro_batches():
    rng = np.random.default_rng(2)
    params = _params(rng)
    one = opt_lib.create_optimizer(1e-2, total_steps=3, warmup_steps=0)
    acc = opt_lib.create_optimizer(1e-2, total_steps=3, warmup_steps=0, accumulation_steps=4)
    micro = [jax.tree_util.tree_map(lambda x: jnp.asarray(rng.normal(size=x.shape), jnp.float32), params)
             for _ in range(8)]
    s1, p1 = one.tx.init(params), params
    s4, p4 = acc.tx.init(params), params
    update_one, update_acc = jax.jit(one.tx.update), jax.jit(acc.tx.update)
    for k in range(2):
        mean = jax.tree_util.tree_map(lambda *g: sum(g) / 4, *micro[4 * k:4 * k + 4])
        u, s1 = update_one(mean, s1, p1)
        p1 = jax.tree_util.tree_map(lambda a, b: a + b, p1, u)
        for g in micro[4 * k:4 * k + 4]:
            u, s4 = update_acc(g, s4, p4)
            p4 = jax.tree_util.tree_map(lambda a, b: a + b, p4, u)
    for a, b in zip(jax.tree_util.tree_leaves(p1), jax.tree_util.tree_leaves(p4)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    assert not np.allclose(np.asarray(jax.tree_util.tree_leaves(p1)[0]),
                           np.asarray(jax.tree_util.tree_leaves(params)[0]))


# ----------------------------------------------------------------------------------------------------
# metrics, data order, prefetch
# ----------------------------------------------------------------------------------------------------


def test_confusion_matrix_and_accuracy_by_hand():
    labels = [0, 1, 2, 2, 1, 0, 2]
    preds = [0, 2, 2, 1, 1, 0, 2]
    cm = confusion_matrix(labels, preds, 3)
    expected = np.array([[2, 0, 0], [0, 1, 1], [0, 1, 2]])
    np.testing.assert_array_equal(cm, expected)
    assert accuracy_from_confusion(cm) == pytest.approx(5 / 7)
    with pytest.raises(ValueError, match="outside"):
        confusion_matrix([0, 3], [0, 0], 3)


def test_epoch_order_is_a_seeded_permutation():
    a = epoch_order(103, 10, seed=5, epoch=0)
    assert a.shape == (10, 10) and len(np.unique(a)) == 100 and a.max() < 103
    np.testing.assert_array_equal(a, epoch_order(103, 10, seed=5, epoch=0))
    assert not np.array_equal(a, epoch_order(103, 10, seed=5, epoch=1))
    assert not np.array_equal(a, epoch_order(103, 10, seed=6, epoch=0))


def test_prefetch_keeps_order_and_raises():
    assert list(prefetch(iter(range(20)), 3)) == list(range(20))

    def broken():
        yield 1
        raise RuntimeError("bad row")

    with pytest.raises(RuntimeError, match="bad row"):
        list(prefetch(broken(), 2))


def test_results_files_and_jsonl(tmp_path):
    save_results(tmp_path, "train", {"train_loss": 0.5, "epoch": 1.0})
    save_results(tmp_path, "eval", {"eval_accuracy": np.float32(0.75), "eval_loss": 0.25})
    assert json.loads((tmp_path / "eval_results.json").read_text()) == {"eval_accuracy": 0.75, "eval_loss": 0.25}
    assert json.loads((tmp_path / "all_results.json").read_text()) == {
        "train_loss": 0.5, "epoch": 1.0, "eval_accuracy": 0.75, "eval_loss": 0.25}
    log = MetricsLogger(tmp_path, tensorboard=True)
    for step in range(1, 6):
        log.log("train", step, {"loss": 1.0 / step})
    log.truncate_after(3)
    log.log("train", 4, {"loss": 9.0})
    log.close()
    records = read_jsonl(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in records] == [1, 2, 3, 4] and records[-1]["loss"] == 9.0
    assert any((tmp_path / "runs").iterdir())  # TensorBoard event file


# ----------------------------------------------------------------------------------------------------
# checkpoints
# ----------------------------------------------------------------------------------------------------


def _state(seed):
    rng = np.random.default_rng(seed)
    params = _params(rng)
    setup = opt_lib.create_optimizer(1e-3, 10, 2, accumulation_steps=2)
    return {"step": jnp.asarray(seed, jnp.int32), "params": params, "batch_stats": {},
            "opt_state": setup.tx.init(params), "rng": jax.random.PRNGKey(seed)}


def test_checkpoints_keep_latest_and_best_and_restore_exactly(tmp_path):
    store = CheckpointStore(tmp_path / "ck", metric="accuracy", mode="max", async_save=False)
    history = {1: 0.5, 2: None, 3: 0.9, 4: 0.2, 5: None}
    for step, acc in history.items():
        store.save(step, _state(step), {"step": step, "epoch": step // 2},
                   metrics=None if acc is None else {"accuracy": acc})
    store.wait()
    assert sorted(store.manager.all_steps()) == [3, 5]
    assert store.latest_step() == 5 and store.best_step() == 3
    restored, meta = store.restore(3, _state(0))
    assert meta == {"step": 3, "epoch": 1}
    for a, b in zip(jax.tree_util.tree_leaves(restored), jax.tree_util.tree_leaves(_state(3))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    store.close()
    reopened = CheckpointStore(tmp_path / "ck", metric="accuracy", mode="max", async_save=False)
    assert reopened.best_step() == 3  # metrics persist on disk
    reopened.save(6, _state(6), {"step": 6})
    reopened.wait()
    assert sorted(reopened.manager.all_steps()) == [3, 6]
    reopened.close()
    loss_store = CheckpointStore(tmp_path / "ck2", metric="loss", mode="min", async_save=False)
    for step, loss in [(1, 2.0), (2, 1.0), (3, 3.0)]:
        loss_store.save(step, _state(step), {"step": step}, metrics={"loss": loss})
    loss_store.wait()
    assert loss_store.best_step() == 2 and loss_store.latest_step() == 3
    loss_store.close()


_WRITER = textwrap.dedent("""
    import os, sys
    os.environ["JAX_PLATFORMS"] = "cpu"
    import numpy as np, jax.numpy as jnp
    from eventlm.training.checkpoints import CheckpointStore
    store = CheckpointStore(sys.argv[1], async_save=False)
    start = (store.latest_step() or 0) + 1
    print("ready", flush=True)
    for step in range(start, start + 10000):
        big = np.full((4_000_000,), step, np.float32)  # 16 MB: most of the time is spent writing
        store.save(step, {"big": jnp.asarray(big), "step": jnp.asarray(step)}, {"step": step})
""")


def test_sigkill_during_checkpoint_write_never_breaks_latest(tmp_path):
    """Kill a process that writes checkpoints back to back at several moments: every time, the latest
    checkpoint that is left must restore completely, with the values written at that step."""
    script = tmp_path / "writer.py"
    script.write_text(_WRITER)
    folder = tmp_path / "ck"
    rng = np.random.default_rng(0)
    restored_steps = []
    for attempt in range(2):
        proc = subprocess.Popen([sys.executable, str(script), str(folder)], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(0.5 + float(rng.uniform(0.0, 1.0)))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        store = CheckpointStore(folder, async_save=False)
        latest = store.latest_step()
        if latest is None:
            store.close()
            continue
        like = {"big": jnp.zeros((4_000_000,), jnp.float32), "step": jnp.asarray(0)}
        state, meta = store.restore(latest, like)
        assert meta == {"step": latest}
        assert int(state["step"]) == latest and float(state["big"][0]) == latest == float(state["big"][-1])
        restored_steps.append(latest)
        store.close()
    assert restored_steps, "no checkpoint was completed in any attempt"
    assert restored_steps == sorted(restored_steps)
    leftovers = [p.name for p in folder.iterdir() if "tmp" in p.name]
    assert len(leftovers) <= 1  # at most the write killed last; reopening the store removes it
    CheckpointStore(folder, async_save=False).close()
    assert not [p.name for p in folder.iterdir() if "tmp" in p.name]


# ----------------------------------------------------------------------------------------------------
# arguments
# ----------------------------------------------------------------------------------------------------


def test_presets_fill_only_unset_fields():
    m, d, t = ModelArguments(preset="shd"), DataArguments(), TrainingArguments(num_train_epochs=2)
    assert resolve_presets(m, d, t) == "shd"
    assert t.num_train_epochs == 2  # the user's value wins
    assert (t.per_device_train_batch_size, t.ssm_base_lr, t.lr_factor, t.warmup_epochs, t.weight_decay) == \
        (32, 1.7e-5, 10.0, 3.0, 0.03)
    m, d, t = ModelArguments(preset="dvs-gesture"), DataArguments(), TrainingArguments()
    resolve_presets(m, d, t)
    assert (t.gradient_accumulation_steps, d.slice_events, t.num_train_epochs, t.per_device_train_batch_size) == \
        (4, 65536, 100, 16)
    m, d, t = ModelArguments(), DataArguments(), TrainingArguments()
    assert resolve_presets(m, d, t) == "spoken-digits"
    with pytest.raises(ValueError, match="unknown --preset"):
        resolve_presets(ModelArguments(preset="nope"), DataArguments(), TrainingArguments())


def test_parse_args_flags_json_and_yaml(tmp_path):
    types = (ModelArguments, DataArguments, TrainingArguments)
    m, d, t = parse_args(types, ["--preset", "tiny", "--num_train_epochs", "2", "--output_dir", "o"])
    assert (m.preset, t.num_train_epochs, t.output_dir, d.dataset_name) == ("tiny", 2.0, "o", None)
    (tmp_path / "a.json").write_text(json.dumps({"preset": "ssc", "seed": 7, "output_dir": "x"}))
    m, _, t = parse_args(types, [str(tmp_path / "a.json")])
    assert (m.preset, t.seed) == ("ssc", 7)
    (tmp_path / "a.yaml").write_text("preset: shd\nper_device_train_batch_size: 4\n")
    m, _, t = parse_args(types, [str(tmp_path / "a.yaml")])
    assert (m.preset, t.per_device_train_batch_size) == ("shd", 4)
    assert parse_config_overrides("hidden_size=8, dropout=0.5,norm=batch,conj_sym=true") == {
        "hidden_size": 8, "dropout": 0.5, "norm": "batch", "conj_sym": True}
    with pytest.raises(ValueError, match="key=value"):
        parse_config_overrides("hidden_size")


# ----------------------------------------------------------------------------------------------------
# the loop on a tiny EventSSM (helpers also used by the subprocess worker below)
# ----------------------------------------------------------------------------------------------------

NUM_CHANNELS, NUM_LABELS = 16, 3


def tiny_rows(n, seed=0):
    """Rows in the Hub layout whose class sets which channels fire (learnable in a few steps)."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        label = int(rng.integers(0, NUM_LABELS))
        k = int(rng.integers(12, 30))
        rows.append({"t": np.sort(rng.integers(0, 30_000, k)).astype(np.int64),
                     "x": ((rng.integers(0, 5, k) + 5 * label) % NUM_CHANNELS).astype(np.int16),
                     "y": np.zeros(k, np.int16), "p": np.zeros(k, np.int8), "label": label})
    return rows


def tiny_tokenizer():
    from eventlm.tokenization_events import EventTokenizer

    return EventTokenizer(sensor_size=(NUM_CHANNELS, 1, 1))


def tiny_config(tokenizer, **overrides):
    from eventlm.models.eventssm.configuration_eventssm import EventSSMConfig

    fields = dict(vocab_size=tokenizer.vocab_size, pad_token_id=tokenizer.pad_token_id,
                  bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, num_labels=NUM_LABELS,
                  hidden_size=8, state_size=8, num_ssm_blocks=2, num_stages=1, num_layers_per_stage=1,
                  pooling_stride=2, dropout=0.1, num_mixture_components=2)
    fields.update(overrides)
    return EventSSMConfig.from_preset("tiny", **fields)


def tiny_args(output_dir, **overrides):
    args = TrainingArguments(output_dir=str(output_dir), max_steps=6, per_device_train_batch_size=8,
                             per_device_eval_batch_size=8, ssm_base_lr=2e-4, warmup_epochs=0.5, logging_steps=1,
                             eval_strategy="no", disable_tqdm=True, report_to="none", seed=3)
    resolve_presets(ModelArguments(preset="tiny"), DataArguments(), args)
    for key, value in overrides.items():
        setattr(args, key, value)
    return args


def tiny_trainer(output_dir, rows=None, eval_rows=None, parallel=None, task="classification", **overrides):
    from eventlm.data.collator import EventCollator
    from eventlm.models.eventssm.modeling_flax_eventssm import (FlaxEventSSMForNextEventPrediction,
                                                                FlaxEventSSMForSequenceClassification)
    from eventlm.training.trainer import Trainer

    tok = tiny_tokenizer()
    cls = FlaxEventSSMForSequenceClassification if task == "classification" else FlaxEventSSMForNextEventPrediction
    model = cls(tiny_config(tok), seed=0)
    collator = EventCollator(tok, pad_to_multiple_of=32, task=task,
                             num_labels=NUM_LABELS if task == "classification" else None)
    return Trainer(model, tiny_args(output_dir, **overrides), rows if rows is not None else tiny_rows(48),
                   eval_rows, collator, parallel=parallel, task=task)


def test_trainer_takes_task_and_optimizer_groups_from_the_model(tmp_path):
    """The task comes from model.task (no task=, no collator); the optimizer groups from model.param_groups:
    a model whose parameters are all "regular" trains them at the regular rate, which is the logged one."""
    from eventlm.modeling_events import FlaxEventPreTrainedModel
    from eventlm.models.eventssm.modeling_flax_eventssm import (FlaxEventSSMForNextEventPrediction,
                                                                FlaxEventSSMForSequenceClassification)
    from eventlm.training.trainer import Trainer

    class AllRegular(FlaxEventSSMForNextEventPrediction):
        param_groups = FlaxEventPreTrainedModel.param_groups  # every parameter "regular"

    args = tiny_args(tmp_path, warmup_epochs=0.0)
    for cls, task, groups, logged in ((FlaxEventSSMForSequenceClassification, "classification", {"regular", "ssm"},
                                       "base"), (AllRegular, "next-event", {"regular"}, "regular")):
        model = cls(tiny_config(tiny_tokenizer()), seed=0)
        trainer = Trainer(model, args, tiny_rows(16))
        assert trainer.task.name == task and trainer.metric_name == trainer.task.default_metric
        setup = trainer.create_optimizer()
        state = setup.tx.init(model.params)
        assert set(state.inner_states) == groups
        assert setup.learning_rate(1) == setup.learning_rates(1)[logged]
    grads = jax.tree_util.tree_map(jnp.ones_like, model.params)  # AdamW's first step: -lr (1 + weight_decay p)
    updates, _ = jax.jit(setup.tx.update)(grads, state, model.params)
    lr = setup.learning_rates(0)["regular"]
    for u, p in zip(jax.tree_util.tree_leaves(updates), jax.tree_util.tree_leaves(model.params)):
        np.testing.assert_allclose(np.asarray(u), -lr * (1 + args.weight_decay * np.asarray(p)), rtol=1e-4, atol=1e-9)


def train_losses(output_dir):
    return [r["loss"] for r in read_jsonl(Path(output_dir) / "metrics.jsonl") if r["split"] == "train"]


_WORKER = textwrap.dedent("""
    import json, os, sys, time
    spec = json.loads(sys.argv[1])
    sys.path.insert(0, spec["tests_dir"])
    import jax
    import test_training as T
    from eventlm.training.sharding import DataParallel

    results = []
    for run in spec["runs"]:  # one after the other
        devices = jax.devices()[: run["devices"]]
        trainer = T.tiny_trainer(run["dir"], parallel=DataParallel(devices), max_steps=run["steps"], save_steps=2,
                                 per_device_train_batch_size=8 // len(devices),
                                 per_device_eval_batch_size=8 // len(devices))
        if run.get("hang_at_batch"):  # the batch collated n-th never comes: the run stalls there until killed
            collate, calls = trainer.collator, []

            def stalling(rows, n=run["hang_at_batch"]):
                calls.append(1)
                if len(calls) >= n:
                    time.sleep(600)
                return collate(rows)

            trainer.collator = stalling
        start = trainer._checkpoints().latest_step()
        trainer.train()
        evaluation = trainer.evaluate(T.tiny_rows(20, seed=9)).metrics if run.get("eval") else None
        trainer.close()
        results.append({"start": start, "losses": T.train_losses(run["dir"]), "devices": len(devices),
                        "eval": evaluation})
    print("RESULT " + json.dumps(results), flush=True)
""")


def _worker(root, runs, wait=True):
    """The worker in a process with 4 simulated CPU devices (XLA_FLAGS must be set before jax starts)."""
    script = root / "worker.py"
    script.write_text(_WORKER)
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO),
               XLA_FLAGS="--xla_force_host_platform_device_count=4",
               JAX_COMPILATION_CACHE_DIR=str(root / "jax-cache"),  # the second process reuses the first's programs
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
    spec = {"runs": runs, "tests_dir": str(Path(__file__).parent)}
    proc = subprocess.Popen([sys.executable, str(script), json.dumps(spec)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    if not wait:
        return proc
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[7:])


def _complete_lines(path) -> int:
    """Lines of a file another process is appending to, a half-written last line not counted."""
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


@pytest.fixture(scope="module")
def killed_and_resumed(tmp_path_factory):
    """A run killed with SIGKILL after 7 of its 12 steps (it stalls before step 8; checkpoints every 2 steps,
    written in the background); then, in one fresh process: its resumption, the same run uninterrupted on 1
    device, and on 4 devices (the same global batch of 8)."""
    root = tmp_path_factory.mktemp("runs")
    killed = root / "killed"
    proc = _worker(root, [{"dir": str(killed), "steps": 12, "devices": 1, "hang_at_batch": 8}], wait=False)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if _complete_lines(killed / "metrics.jsonl") >= 7:
            break
        time.sleep(0.1)
    assert proc.poll() is None, "the run ended before it could be killed: " + proc.stderr.read()[-2000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    resumed, one, four = _worker(root, [
        {"dir": str(killed), "steps": 12, "devices": 1},
        {"dir": str(root / "one"), "steps": 12, "devices": 1, "eval": True},
        {"dir": str(root / "four"), "steps": 12, "devices": 4, "eval": True}])
    return {"resumed": resumed, "one": one, "four": four}


def test_sigkill_then_resume_gives_the_uninterrupted_losses(killed_and_resumed):
    resumed, reference = killed_and_resumed["resumed"], killed_and_resumed["one"]
    assert resumed["start"] in (4, 6), resumed  # it resumed from a checkpoint, mid-run
    assert reference["start"] is None
    assert len(resumed["losses"]) == len(reference["losses"]) == 12, (resumed, reference)
    np.testing.assert_array_equal(resumed["losses"], reference["losses"],  # bit for bit
                                  err_msg=f"resumed from step {resumed['start']}")
    assert reference["losses"][-1] < reference["losses"][0]


def test_data_parallel_4_devices_equals_1_device(killed_and_resumed):
    one, four = killed_and_resumed["one"], killed_and_resumed["four"]
    assert (one["devices"], four["devices"]) == (1, 4)
    assert len(four["losses"]) == 12
    np.testing.assert_allclose(four["losses"], one["losses"], rtol=1e-5, atol=1e-6)
    assert four["eval"]["eval_samples"] == one["eval"]["eval_samples"] == 20
    for key in ("eval_loss", "eval_accuracy"):
        assert four["eval"][key] == pytest.approx(one["eval"][key], rel=1e-5, abs=1e-6)


def test_next_event_checkpoint_loads_into_a_classifier_with_backbone_kept(tmp_path):
    from flax.traverse_util import flatten_dict

    from eventlm.models.eventssm.modeling_flax_eventssm import (FlaxEventSSMForNextEventPrediction,
                                                                FlaxEventSSMForSequenceClassification)
    from eventlm.training.pipelines import load_model, load_tokenizer

    tok = tiny_tokenizer()
    pretrained = FlaxEventSSMForNextEventPrediction(tiny_config(tok), seed=5)
    pretrained.save_pretrained(tmp_path / "pt")
    tok.save_pretrained(tmp_path / "pt")
    model_args = ModelArguments(model_name_or_path=str(tmp_path / "pt"), preset="tiny")
    assert load_tokenizer(model_args, DataArguments()).sensor_size == tok.sensor_size  # the model's own tokenizer
    model = load_model(FlaxEventSSMForSequenceClassification, model_args, tok, seed=1, num_labels=4,
                       id2label={i: f"c{i}" for i in range(4)}, label2id={f"c{i}": i for i in range(4)})
    assert model.config.num_labels == 4 and model.config.id2label[3] == "c3"
    assert set(model.params) == {"eventssm", "classifier"}
    kept = flatten_dict(model.params["eventssm"])
    original = flatten_dict(pretrained.params["eventssm"])
    assert kept.keys() == original.keys()
    for key in kept:
        np.testing.assert_array_equal(np.asarray(kept[key]), np.asarray(original[key]))
    assert model.params["classifier"]["kernel"].shape == (8, 4)


def test_training_augmentation_is_seeded_and_collates_soft_labels():
    from eventlm.data.collator import EventCollator
    from eventlm.training.pipelines import make_augment

    tok = tiny_tokenizer()
    assert make_augment(DataArguments(augment=False), tok, NUM_LABELS) is None
    augment = make_augment(DataArguments(augment=True, augmentation_preset="shd"), tok, NUM_LABELS)
    rows = tiny_rows(8, seed=4)
    a = augment(rows, np.random.default_rng([1, 0, 5]))
    b = augment(rows, np.random.default_rng([1, 0, 5]))
    for ra, rb in zip(a, b):
        for key in ("t", "x"):
            np.testing.assert_array_equal(ra[key], rb[key])
    assert any(len(ra["t"]) != len(r["t"]) or not np.array_equal(ra["x"], r["x"]) for ra, r in zip(a, rows))
    collator = EventCollator(tok, pad_to_multiple_of=32, num_labels=NUM_LABELS)
    mixed = next(out for out in (augment(rows, np.random.default_rng([1, 0, k])) for k in range(50))
                 if "soft_label" in out[0])  # CutMix fires with p = 0.3 per batch
    labels = collator(mixed)["labels"]
    assert labels.shape == (8, NUM_LABELS) and labels.dtype == np.float32
    np.testing.assert_allclose(labels.sum(1), 1.0, rtol=1e-6)
