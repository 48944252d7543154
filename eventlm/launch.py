"""`eventlm launch`: N processes of one eventlm command on this machine, as one multi-process run.

    eventlm launch --num_processes 2 -- train --output_dir out/two
    eventlm launch --num_processes 2 --devices_per_process 2 -- train ...   # simulated CPU devices

Each process gets JAX_COORDINATOR_ADDRESS (127.0.0.1 and a free port), JAX_NUM_PROCESSES and JAX_PROCESS_ID,
which `eventlm train` reads like its --coordinator_address / --num_processes / --process_id flags. Their
output is streamed line by line with a "[rank]" prefix. When one process fails, the others are stopped
(SIGTERM, then SIGKILL) and the launcher returns its exit code; a rerun of the same command resumes from
the last checkpoint. On several machines start one `eventlm train` per machine instead (README, "Training
on several machines").
"""

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import IO, Dict, List, Optional, Sequence

from .training.sharding import ENV_COORDINATOR, ENV_NUM_PROCESSES, ENV_PROCESS_ID

GRACE_SECONDS = 5.0  # between SIGTERM and SIGKILL when the others are stopped


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def process_env(rank: int, num_processes: int, coordinator_address: str, devices_per_process: Optional[int] = None,
                base: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """The environment of process `rank`: where the coordinator is, how many processes, which one this is."""
    env = dict(os.environ if base is None else base)
    env.update({ENV_COORDINATOR: coordinator_address, ENV_NUM_PROCESSES: str(num_processes),
                ENV_PROCESS_ID: str(rank), "PYTHONUNBUFFERED": "1"})
    if devices_per_process:
        flags = [f for f in env.get("XLA_FLAGS", "").split() if not f.startswith("--xla_force_host_platform_device_count")]
        env["XLA_FLAGS"] = " ".join(flags + [f"--xla_force_host_platform_device_count={int(devices_per_process)}"])
        env["JAX_PLATFORMS"] = "cpu"
    return env


def _stream(rank: int, pipe: IO[str], out: IO[str], lock: threading.Lock) -> None:
    for line in iter(pipe.readline, ""):
        with lock:
            out.write(f"[{rank}] {line if line.endswith(chr(10)) else line + chr(10)}")
            out.flush()
    pipe.close()


def _stop(procs: Sequence[subprocess.Popen], grace: float = GRACE_SECONDS) -> None:
    """SIGTERM to every running process (and its children), SIGKILL to those still alive after `grace` s."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 0.0)):
        alive = [p for p in procs if p.poll() is None]
        for p in alive:
            try:
                os.killpg(p.pid, sig)  # each process leads its own group (start_new_session)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while alive and time.monotonic() < deadline:
            alive = [p for p in alive if p.poll() is None]
            time.sleep(0.05)
    for p in procs:
        p.wait()


def launch(command: Sequence[str], num_processes: int, port: Optional[int] = None,
           devices_per_process: Optional[int] = None, env: Optional[Dict[str, str]] = None,
           out: IO[str] = None, timeout: Optional[float] = None) -> int:
    """Run `command` (an argv) as processes 0..num_processes-1 of one jax.distributed run on 127.0.0.1.
    Returns 0 when all succeed, else the first failing exit code (a process killed by signal S: 128 + S);
    the other processes are stopped then. `timeout` (seconds): stop all and return 124 after it."""
    if num_processes < 1:
        raise ValueError(f"--num_processes must be >= 1, got {num_processes}")
    if not command:
        raise ValueError("eventlm launch needs a command after '--', e.g. eventlm launch --num_processes 2 -- train")
    out = out or sys.stdout
    address = f"127.0.0.1:{port or free_port()}"
    lock = threading.Lock()
    procs: List[subprocess.Popen] = []
    threads = []
    try:
        for rank in range(num_processes):
            p = subprocess.Popen(list(command), env=process_env(rank, num_processes, address, devices_per_process, env),
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                                 start_new_session=True)
            procs.append(p)
            t = threading.Thread(target=_stream, args=(rank, p.stdout, out, lock), daemon=True)
            t.start()
            threads.append(t)
        deadline = None if timeout is None else time.monotonic() + timeout
        code = 0
        while True:
            codes = [p.poll() for p in procs]
            failed = [(rank, c) for rank, c in enumerate(codes) if c not in (None, 0)]
            if failed:
                rank, c = failed[0]
                code = 128 - c if c < 0 else c
                how = f"was killed by signal {-c}" if c < 0 else f"exited with code {c}"
                _say(out, lock, f"process {rank} {how}; stopping the other processes (a rerun of the same "
                                f"command resumes from the last checkpoint)")
                break
            if all(c == 0 for c in codes):
                break
            if deadline is not None and time.monotonic() > deadline:
                _say(out, lock, f"the processes ran past the {timeout:.0f} s timeout; stopping them")
                code = 124
                break
            time.sleep(0.1)
    except KeyboardInterrupt:
        _say(out, lock, "interrupted; stopping the processes")
        code = 130
    finally:
        _stop(procs)
        for t in threads:
            t.join(timeout=5)
    return code


def _say(out: IO[str], lock: threading.Lock, message: str) -> None:
    with lock:
        out.write(f"[launch] {message}\n")
        out.flush()


def main(argv: Sequence[str]) -> int:
    argv = list(argv)
    rest: List[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, rest = argv[:cut], argv[cut + 1:]
    parser = argparse.ArgumentParser(
        prog="eventlm launch",
        description="Start N local processes of an eventlm command as one multi-process (jax.distributed) run: "
                    "eventlm launch --num_processes 2 -- train --output_dir out/two")
    parser.add_argument("--num_processes", type=int, required=True, help="processes to start on this machine")
    parser.add_argument("--port", type=int, default=None, help="coordinator port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--devices_per_process", type=int, default=None,
                        help="simulate this many CPU devices per process (XLA_FLAGS; sets JAX_PLATFORMS=cpu)")
    parser.add_argument("--timeout", type=float, default=None, help="stop every process after this many seconds")
    args = parser.parse_args(argv)
    if not rest:
        parser.error("give the eventlm command after '--', e.g. eventlm launch --num_processes 2 -- train --output_dir out/two")
    if args.num_processes < 1:
        parser.error(f"--num_processes must be >= 1, got {args.num_processes}")
    if args.devices_per_process is not None and args.devices_per_process < 1:
        parser.error(f"--devices_per_process must be >= 1, got {args.devices_per_process}")
    for flag in ("--num_processes", "--process_id", "--coordinator_address"):
        if any(a == flag or a.startswith(flag + "=") for a in rest):
            parser.error(f"the command after '--' sets {flag}; eventlm launch sets it for each process, drop it there")
    return launch([sys.executable, "-m", "eventlm.cli", *rest], args.num_processes, port=args.port,
                  devices_per_process=args.devices_per_process, timeout=args.timeout)
