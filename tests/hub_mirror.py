"""A read-only Hugging Face Hub on loopback for tests: olah serving local git repositories, offline.

olah (PyPI, a Hub mirror server) answers the Hub API and file routes for git repositories found under
its `mirrors-path` as <mirrors>/<datasets|models>/<org>/<name>. Nothing leaves the machine: olah runs
with `offline = true`. Clients reach it through HF_ENDPOINT, which huggingface_hub and datasets read at
import time, so the client side runs in a subprocess (`run_client`).

    with HubMirror(tmp_path) as hub:
        hub.add_repo("someone/events", folder, repo_type="datasets")
        hub.run_client("import datasets; datasets.load_dataset('someone/events')")

Other test files (e.g. loading models by repo id) may use it the same way.
"""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class HubMirror:
    def __init__(self, root, startup_timeout: float = 90.0):
        self.root = Path(root)
        self.mirrors = self.root / "mirrors"
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.startup_timeout = startup_timeout
        self._proc = None
        self._repos = []

    def add_repo(self, repo_id: str, folder, repo_type: str = "datasets") -> str:
        """Commit a copy of `folder` as the git repo `repo_id` (branch main); returns the commit sha."""
        if repo_type not in ("datasets", "models"):
            raise ValueError(f"repo_type must be 'datasets' or 'models', got {repo_type!r}")
        target = self.mirrors / repo_type / repo_id
        shutil.copytree(folder, target)
        git = ["git", "-c", "user.name=eventlm-tests", "-c", "user.email=tests@localhost", "-c", "commit.gpgsign=false"]
        for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "test upload"]):
            subprocess.run(git + args, cwd=target, check=True, capture_output=True)
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=target, check=True, capture_output=True, text=True)
        self._repos.append((repo_type, repo_id))
        return sha.stdout.strip()

    def start(self):
        config = self.root / "olah.toml"
        config.write_text(
            "[basic]\n"
            f'host = "127.0.0.1"\nport = {self.port}\n'
            f'repos-path = "{self.root / "cache"}"\n'
            f'mirrors-path = ["{self.mirrors}"]\n'
            "[accessibility]\noffline = true\n"
        )
        log = open(self.root / "olah.out", "wb")
        self._proc = subprocess.Popen(
            [sys.executable, "-c", "from olah.server import cli; cli()", "-c", str(config),
             "--log-path", str(self.root / "logs")],
            cwd=self.root, stdout=log, stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"olah exited with {self._proc.returncode}: {self.log()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.endpoint}/", timeout=2):
                    return self
            except urllib.error.HTTPError:  # any HTTP answer means the server is up
                return self
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"olah did not answer on {self.endpoint} within {self.startup_timeout}s: {self.log()[-2000:]}")

    def log(self) -> str:
        path = self.root / "olah.out"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self):
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def client_env(self) -> dict:
        """Environment for a client process: this endpoint, a fresh HF cache, no offline switches."""
        env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_TOKEN")}
        env.update(HF_ENDPOINT=self.endpoint, HF_HOME=str(self.root / "hf-home"), HF_HUB_DISABLE_TELEMETRY="1",
                   HF_HUB_DISABLE_PROGRESS_BARS="1", JAX_PLATFORMS="cpu")
        return env

    def run_client(self, code: str, timeout: float = 180.0) -> subprocess.CompletedProcess:
        """Run Python `code` against this Hub in a fresh interpreter; raises with its output if it fails."""
        result = subprocess.run([sys.executable, "-c", code], env=self.client_env(), cwd=self.root,
                                capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise AssertionError(f"client failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
                                 f"\n--- olah log ---\n{self.log()[-3000:]}")
        return result

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
