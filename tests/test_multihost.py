"""Multi-process training (jax.distributed) with 2 processes on 127.0.0.1, each with 2 simulated CPU devices,
against the independent reference: one process with 4 simulated devices at the same global batch.

Runs of `eventlm train` on the embedded dataset (tiny model, 24 training rows, global batch 8, 6 steps,
checkpoints every 2 steps), each process through a small worker that records what it did (training rows
read, files written, pushes) and can be told to stall at its n-th training batch:

  one      1 process x 4 devices                       the reference losses and data order
  two      `launch`: 2 processes x 2 devices           losses, rows seen, who writes and pushes
  killed   2 processes started with the CLI flags;     process 1 stalls after the step-4 checkpoint and is
           SIGKILLed: process 0 must stop by itself, with a clear error, within the timeout
  resumed  the killed run's folder continued by 1 process (a copy) and by 2 processes (`launch`)

Bounded: every process has a deadline, ports are free ones on 127.0.0.1, and every child is killed at the end.
"""

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from eventlm.launch import free_port, launch
from eventlm.training.metrics import read_jsonl
from eventlm.training.sharding import distributed_settings

REPO = Path(__file__).resolve().parents[1]
ROWS, GLOBAL_BATCH, STEPS = 24, 8, 6  # 3 steps per epoch: two epochs
DEADLINE = 240  # seconds any one run may take on a busy 2-core box
TIMEOUT = 20  # --distributed_timeout of the runs: how long a process waits for a dead peer
TINY = ["--preset", "tiny", "--config_overrides", "hidden_size=8,state_size=8,num_ssm_blocks=2,num_layers_per_stage=1,"
        "pooling_stride=2", "--max_train_samples", str(ROWS), "--max_eval_samples", "8", "--max_steps", str(STEPS),
        "--save_steps", "2", "--pad_to_multiple_of", "32", "--eval_strategy", "no", "--logging_steps", "1",
        "--per_device_train_batch_size", "2", "--per_device_eval_batch_size", "2",
        "--disable_tqdm", "true", "--report_to", "none", "--distributed_timeout", str(TIMEOUT)]

_WORKER = textwrap.dedent('''
    """`eventlm <argv>` in this process, recording the training rows read, the files written and the pushes."""
    import builtins, io, json, os, sys, time

    import eventlm.training.trainer as trainer_module
    from eventlm import cli
    from eventlm.training import pipelines

    record = {"rows": [], "writes": [], "pushes": []}
    stall_at = int(os.environ.get("WORKER_STALL_AT", "0"))  # this process never gets its n-th training batch
    fetch_rows = trainer_module.fetch_rows

    def recording_fetch(dataset, indices):
        if sys._getframe(1).f_code.co_name == "_train_batches":
            record["rows"].append([int(i) for i in indices])
            if len(record["rows"]) == stall_at:
                open(os.environ["WORKER_RECORD"] + ".stalled", "w").close()
                time.sleep(600)
        return fetch_rows(dataset, indices)

    def recording(func, path_arg):
        def wrapped(*args, **kwargs):
            mode = kwargs.get("mode", args[1] if len(args) > 1 else "r") if func in (builtins_open, io_open) else "w"
            if any(c in str(mode) for c in "wax+"):
                record["writes"].append(os.path.abspath(str(args[path_arg])))
            return func(*args, **kwargs)
        return wrapped

    builtins_open, io_open = builtins.open, io.open
    builtins.open = recording(builtins_open, 0)
    io.open = recording(io_open, 0)
    os.replace = recording(os.replace, 1)
    os.rename = recording(os.rename, 1)
    trainer_module.fetch_rows = recording_fetch
    pipelines.push_folder_to_hub = lambda folder, repo_id, **kw: record["pushes"].append(repo_id)
    code = 1
    try:
        code = cli.main(sys.argv[1:])
    finally:
        import jax
        with io_open(f"{os.environ['WORKER_RECORD']}.{jax.process_index()}.json", "w") as f:
            json.dump(dict(record, code=code), f)
    sys.exit(code)
''')


class Runs:
    """Starts the workers; every process it starts is killed in `close`."""

    def __init__(self, root: Path):
        self.root = root
        self.worker = root / "worker.py"
        self.worker.write_text(_WORKER)
        self.cache = root / "synthetic"
        self.procs = []

    def env(self, name, devices, **extra):
        env = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1",
                   XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
                   WORKER_RECORD=str(self.root / name),
                   JAX_COMPILATION_CACHE_DIR=str(self.root / "jax-cache"),  # later runs reuse earlier programs
                   JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
        for key in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID", "SLURM_NTASKS"):
            env.pop(key, None)
        env.update({k: str(v) for k, v in extra.items()})
        return env

    def argv(self, name, *extra):
        return ["train", *TINY, "--output_dir", str(self.root / name), "--synthetic_cache_dir", str(self.cache), *extra]

    def start(self, name, argv, devices, rank=0, **extra_env):
        """A worker whose output goes to <name>.<rank>.log (a pipe nobody reads would block it when full)."""
        log = self.root / f"{name}.{rank}.log"
        with open(log, "w") as f:
            proc = subprocess.Popen([sys.executable, str(self.worker), *argv], env=self.env(name, devices, **extra_env),
                                    stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
        proc.log = log
        self.procs.append(proc)
        return proc

    def finish(self, proc, timeout=DEADLINE):
        """Wait for a worker; its output. A worker past `timeout` is killed (the test fails)."""
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise AssertionError(f"{proc.log.name} ran past {timeout} s: " + proc.log.read_text()[-4000:])
        return proc.log.read_text()

    def single(self, name, *extra):
        """1 process x 4 devices; returns its output."""
        proc = self.start(name, self.argv(name, *extra), devices=4)
        out = self.finish(proc)
        assert proc.returncode == 0, out[-4000:]
        return out

    def launched(self, name, *extra):
        """`launch`: 2 processes x 2 devices; returns the prefixed output."""
        out = io.StringIO()
        code = launch([sys.executable, str(self.worker), *self.argv(name, *extra)], 2, devices_per_process=2,
                      env=self.env(name, 2), out=out, timeout=DEADLINE)
        assert code == 0, out.getvalue()[-6000:]
        return out.getvalue()

    def record(self, name, rank):
        return json.loads((self.root / f"{name}.{rank}.json").read_text())

    def close(self):
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def losses(folder):
    return [r["loss"] for r in read_jsonl(Path(folder) / "metrics.jsonl") if r["split"] == "train"]


def _wait_for(condition, procs, seconds, what):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if condition():
            return
        dead = [p for p in procs if p.poll() is not None]
        assert not dead, f"a process ended before {what}: " + dead[0].log.read_text()[-4000:]
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    r = Runs(tmp_path_factory.mktemp("multihost"))
    out = {}
    try:
        r.single("one")
        out["two_output"] = r.launched("two", "--push_to_hub", "true", "--hub_model_id", "someone/tiny-two")

        # two processes started by hand with the flags; process 1 stalls at its 5th training batch (after the
        # step-4 checkpoint), then is killed
        address = f"127.0.0.1:{free_port()}"
        killed = [r.start("killed", r.argv("killed", "--num_processes", "2", "--process_id", str(rank),
                                           "--coordinator_address", address), devices=2, rank=rank,
                          **({"WORKER_STALL_AT": 5} if rank == 1 else {}))
                  for rank in range(2)]
        checkpoint = r.root / "killed" / "checkpoints" / "4"
        _wait_for(lambda: (r.root / "killed.stalled").exists() and checkpoint.is_dir(), killed, DEADLINE,
                  "the stall after the step-4 checkpoint")
        time.sleep(1.0)  # the checkpoint's commit finishes in the background
        os.killpg(killed[1].pid, signal.SIGKILL)
        killed[1].wait()
        t0 = time.time()
        try:
            killed[0].wait(timeout=3 * TIMEOUT + 30)
        except subprocess.TimeoutExpired:
            os.killpg(killed[0].pid, signal.SIGKILL)
            killed[0].wait()
        out["survivor_seconds"], out["survivor_code"] = time.time() - t0, killed[0].returncode
        out["survivor_output"] = killed[0].log.read_text()
        print(f"process 0 exited {out['survivor_seconds']:.1f} s after process 1 was killed")
        out["killed_losses"] = losses(r.root / "killed")

        # the killed run continued: by one process (in a copy) and by two processes (the restart), side by side
        shutil.copytree(r.root / "killed", r.root / "resumed1")
        one = r.start("resumed1", r.argv("resumed1"), devices=4)
        out["resumed2_output"] = r.launched("killed")
        out["resumed1_output"] = r.finish(one)
        assert one.returncode == 0, out["resumed1_output"][-4000:]
        out["records"] = {name: [r.record(name, k) for k in ranks] for name, ranks in
                          (("one", [0]), ("two", [0, 1]), ("resumed1", [0]), ("killed", [0, 1]))}
        out["root"] = r.root
        yield out
    finally:
        r.close()


def test_two_processes_give_the_losses_of_one_process_on_4_devices(runs):
    one, two = losses(runs["root"] / "one"), losses(runs["root"] / "two")
    assert len(one) == len(two) == STEPS
    np.testing.assert_allclose(two, one, rtol=1e-5, atol=1e-6)
    assert two != [two[0]] * STEPS  # the model trains: the steps differ
    results = [json.loads((runs["root"] / n / "all_results.json").read_text()) for n in ("one", "two")]
    for key in ("eval_loss", "eval_accuracy", "validation_loss"):
        assert results[1][key] == pytest.approx(results[0][key], rel=1e-5, abs=1e-6), key
    assert results[0]["eval_samples"] == results[1]["eval_samples"] == 8
    assert results[0]["train_samples"] == results[1]["train_samples"] == ROWS


def test_every_training_row_is_read_once_per_epoch_across_processes(runs):
    reference = runs["records"]["one"][0]["rows"]
    p0, p1 = (rec["rows"] for rec in runs["records"]["two"])
    assert len(reference) == len(p0) == len(p1) == STEPS
    steps_per_epoch = ROWS // GLOBAL_BATCH
    for epoch in range(STEPS // steps_per_epoch):
        steps = range(epoch * steps_per_epoch, (epoch + 1) * steps_per_epoch)
        read = [i for k in steps for i in p0[k] + p1[k]]
        assert sorted(read) == list(range(ROWS)), f"epoch {epoch}: {read}"
    for k in range(STEPS):
        assert len(p0[k]) == len(p1[k]) == GLOBAL_BATCH // 2
        assert sorted(p0[k] + p1[k]) == sorted(reference[k]), f"step {k + 1}: not the single process's batch"


def test_only_process_0_writes_the_folder_and_pushes(runs):
    folder = runs["root"] / "two"
    main, other = runs["records"]["two"]
    outside_checkpoints = [p for p in other["writes"] if Path(p).is_relative_to(folder)
                           and not Path(p).is_relative_to(folder / "checkpoints")]
    assert outside_checkpoints == [], outside_checkpoints
    written = {Path(p).name for p in main["writes"] if Path(p).is_relative_to(folder)}
    for name in ("model.safetensors", "config.json", "README.md", "metrics.jsonl", "train_results.json",
                 "all_results.json", "run_args.json", "tokenizer_config.json"):
        assert name in written, (name, sorted(written))
    assert main["pushes"] == ["someone/tiny-two"] and other["pushes"] == []
    assert runs["two_output"].count("train_runtime") == 1  # one summary, from process 0


def test_a_killed_process_stops_the_other_with_a_clear_error_in_bounded_time(runs):
    output = runs["survivor_output"]
    assert runs["survivor_seconds"] < TIMEOUT, f"process 0 ran {runs['survivor_seconds']:.0f} s after process 1 was killed"
    assert runs["survivor_code"] != 0
    # the trainer's line, and the process left at once (not after jax's shutdown barrier timed out)
    assert "another process has probably stopped" in output and "resume from step 4" in output, output[-4000:]
    assert "Shutdown barrier has failed" not in output, output[-4000:]
    # the steps before the kill were logged (process 0 writes metrics as it goes) and are the reference's
    np.testing.assert_allclose(runs["killed_losses"][:4], losses(runs["root"] / "one")[:4], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["resumed1", "killed"])
def test_the_two_process_checkpoint_resumes_in_one_and_in_two_processes(runs, name):
    """resumed1: the killed run's folder continued by 1 process x 4 devices; killed: the restart of both."""
    output = runs[f"{'resumed1' if name == 'resumed1' else 'resumed2'}_output"]
    assert "resuming from checkpoint step 4" in output, output[-4000:]
    np.testing.assert_allclose(losses(runs["root"] / name), losses(runs["root"] / "one"), rtol=1e-5, atol=1e-6)
    if name == "resumed1":  # it read only the batches of steps 5 and 6, those of the reference
        rows = runs["records"]["resumed1"][0]["rows"]
        assert [sorted(b) for b in rows] == [sorted(b) for b in runs["records"]["one"][0]["rows"][4:]]
    else:
        p0, p1 = (rec["rows"] for rec in runs["records"]["killed"])
        assert [sorted(a + b) for a, b in zip(p0, p1)] == [sorted(b) for b in runs["records"]["one"][0]["rows"][4:]]


def test_launch_streams_with_rank_prefixes_and_stops_all_when_one_fails():
    child = ("import os, sys, time; r = int(os.environ['JAX_PROCESS_ID']); "
             "print('hello', r, os.environ['JAX_NUM_PROCESSES'], flush=True); "
             "time.sleep(0.5 if r == 1 else 600); sys.exit(3)")
    out = io.StringIO()
    t0 = time.time()
    code = launch([sys.executable, "-c", child], 2, out=out, timeout=120)
    text = out.getvalue()
    assert code == 3, text
    assert time.time() - t0 < 30, "process 0 was not stopped"
    assert "[0] hello 0 2" in text and "[1] hello 1 2" in text
    assert "[launch] process 1 exited with code 3; stopping the other processes" in text


def test_distributed_settings_from_flags_environment_and_slurm():
    assert distributed_settings(environ={}) is None
    assert distributed_settings(num_processes=1, environ={}) is None
    assert distributed_settings("10.0.0.1:1234", 2, 1, environ={}) == {
        "coordinator_address": "10.0.0.1:1234", "num_processes": 2, "process_id": 1}
    env = {"JAX_COORDINATOR_ADDRESS": "h:99", "JAX_NUM_PROCESSES": "4", "JAX_PROCESS_ID": "3"}
    assert distributed_settings(environ=env) == {"coordinator_address": "h:99", "num_processes": 4, "process_id": 3}
    assert distributed_settings(process_id=0, environ=env)["process_id"] == 0  # the flag wins
    assert distributed_settings(environ={"SLURM_NTASKS": "8"}) == {  # jax reads the SLURM job itself
        "coordinator_address": None, "num_processes": None, "process_id": None}
    assert distributed_settings(environ={"SLURM_NTASKS": "1"}) is None


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_processes=2), "--num_processes 2 needs --coordinator_address HOST:PORT"),
    (dict(coordinator_address="127.0.0.1:1234", num_processes=2, process_id=2), "--process_id must be in 0..1"),
    (dict(coordinator_address="127.0.0.1", num_processes=2, process_id=0), "must be HOST:PORT"),
    (dict(coordinator_address="127.0.0.1:1234", num_processes=2), "needs --process_id too"),
    (dict(num_processes=0), "--num_processes must be >= 1, got 0"),
])
def test_a_wrong_launch_flag_is_named_with_its_fix(kwargs, message):
    with pytest.raises(ValueError, match=message.replace(".", r"\.").replace("+", r"\+")):
        distributed_settings(environ={}, **kwargs)


def test_eventlm_launch_refuses_flags_it_sets(capsys):
    from eventlm import cli

    with pytest.raises(SystemExit) as err:
        cli.main(["launch", "--num_processes", "2", "--", "train", "--process_id", "1"])
    assert err.value.code == 2
    assert "eventlm launch sets it for each process" in capsys.readouterr().err
