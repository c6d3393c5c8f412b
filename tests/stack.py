"""pestid's production shape on 127.0.0.1, for tests and benchmarks: replicas behind nginx as
``deploy/run-local.sh`` starts them from the shipped nginx file, and a throw-away MLflow tracking server."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from tests.conftest import REPO, free_port

LAUNCHER = REPO / "deploy" / "run-local.sh"


@dataclasses.dataclass(frozen=True)
class Replica:
    index: int
    port: int
    pid: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclasses.dataclass(frozen=True)
class Stack:
    """A running stack: nginx's URL, the replicas behind it, and the launcher's run folder."""

    url: str
    replicas: list[Replica]
    run: Path

    def kill(self, index: int) -> None:
        """SIGKILL one replica: no clean-up, no goodbye, as when its machine dies."""
        os.kill(self.replicas[index].pid, signal.SIGKILL)

    def access_log(self) -> list[str]:
        """nginx's access log: one line per request, with every replica it was sent to (``upstream="…"``)."""
        return (self.run / "nginx" / "logs" / "pestid-access.log").read_text().splitlines()

    def error_log(self) -> list[str]:
        """nginx's error log: why a replica was left for another (refused, reset, closed mid-answer …)."""
        return (self.run / "nginx" / "logs" / "error.log").read_text().splitlines()


def missing_tools() -> str | None:
    """Why the launcher cannot run here, or None."""
    if not LAUNCHER.exists():
        return "deploy/ is not beside these tests (the serve-only wheel check copies the tests alone)"
    if shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists():
        return "Debian's nginx is not installed (scripts/setup-services.sh installs it)"
    if shutil.which("envsubst") is None:
        return "envsubst (Debian's gettext-base) is not installed"
    return None


@contextlib.contextmanager
def local_stack(
    model: str, run: Path, *, env: dict[str, str], replicas: int = 3, workers: int = 1,
    upload_rate: str | None = None, timeout: float = 240,
) -> Iterator[Stack]:  # fmt: skip
    """``deploy/run-local.sh`` with ``replicas`` replicas on free ports and nginx in front (uploads per address:
    ``upload_rate``, or the launcher's default); yields once every one answers, stops them all after. Raises
    ``RuntimeError`` saying why when it cannot start here."""
    reason = missing_tools()
    if reason:
        raise RuntimeError(reason)
    ports = [free_port() for _ in range(replicas)]
    listen = free_port()
    run.mkdir(parents=True, exist_ok=True)
    command = ["bash", str(LAUNCHER), "--model", model, "--ports", ",".join(map(str, ports)), "--listen", str(listen),
               "--workers", str(workers), "--run", str(run)]  # fmt: skip
    if upload_rate:
        command += ["--upload-rate", upload_rate]
    full_env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}", **env}
    with (run / "launcher.log").open("wb") as log:
        launcher = subprocess.Popen(command, env=full_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while not (run / "ready").exists():
            if launcher.poll() is not None or time.monotonic() > deadline:
                logs = "\n".join(p.read_text(errors="replace")[-1500:] for p in sorted(run.glob("*.log")))
                raise RuntimeError(f"deploy/run-local.sh did not start:\n{logs}")
            time.sleep(0.3)
        listed = [line.split() for line in (run / "replicas").read_text().splitlines()]
        yield Stack(f"http://127.0.0.1:{listen}", [Replica(int(i), int(p), int(pid)) for i, p, pid in listed], run)
    finally:
        launcher.terminate()  # the launcher stops nginx and every replica it started
        try:
            launcher.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(launcher.pid, signal.SIGKILL)  # its own process group (start_new_session)
            launcher.wait()


@contextlib.contextmanager
def throwaway_mlflow(
    folder: Path, *, backend_store_uri: str | None = None, artifacts_destination: str | None = None,
    env: dict[str, str] | None = None, timeout: float = 180,
) -> Iterator[str]:  # fmt: skip
    """A real ``mlflow server`` on 127.0.0.1, started as an operator starts it (``deploy/run-mlflow.sh``); yields its
    URL. By default a SQLite backend in ``folder`` with artefacts served from ``folder``; with ``backend_store_uri``
    (``postgresql+psycopg://…``) and ``artifacts_destination`` (``s3://…``, the store's endpoint and keys in ``env``)
    the production shape. Runs in ``folder``, so anything it keeps on its own disk lands there. Raises
    ``RuntimeError`` saying why when it cannot start here."""
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    if not mlflow_bin.exists():
        raise RuntimeError("the mlflow command is not installed (the [train] or [registry] extra)")
    port = free_port()
    folder.mkdir(parents=True, exist_ok=True)
    settings = {"MLFLOW_BIN": str(mlflow_bin), "MLFLOW_HOST": "127.0.0.1", "MLFLOW_PORT": str(port),
                "MLFLOW_WORKERS": "1", "MLFLOW_BACKEND_STORE_URI": backend_store_uri or f"sqlite:///{folder / 'mlflow.db'}",
                "MLFLOW_ARTIFACTS_DESTINATION": artifacts_destination or str(folder / "artifacts")}  # fmt: skip
    with (folder / "mlflow.log").open("wb") as log:
        server = subprocess.Popen(["bash", str(REPO / "deploy" / "run-mlflow.sh")], cwd=folder,
                                  env={**os.environ, **settings, **(env or {})}, stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mlflow server did not start: {(folder / 'mlflow.log').read_text()[-2000:]}")
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server and the workers it started: its own process group
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
