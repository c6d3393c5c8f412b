import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import uvicorn
from fastapi.testclient import TestClient

from pestid.serving.app import create_app
from pestid.serving.settings import Settings
from tests.conftest import REPO, free_port, jpeg_bytes, photo
from tests.onnx_models import linear_model


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny ONNX model with pestid's contract, built without torch (serving never needs it)."""
    return linear_model(tmp_path_factory.mktemp("serving-model") / "model.onnx")


def make_settings(model: Path, data_dir: Path, **extra: object) -> Settings:
    """Settings for a test's app. No audit sample unless the test asks (``audit_share=``): an audit item is blind
    and cannot be confirmed, and whether an answer is drawn depends on its random submission id."""
    return Settings(model=str(model), data_dir=data_dir, log_json=False, **{"audit_share": 0.0, **extra})


@pytest.fixture
def client(tiny_model, tmp_path):
    with TestClient(create_app(make_settings(tiny_model, tmp_path / "data"))) as test_client:
        yield test_client


def jpeg(seed: int = 0, label: str = "golden_apple_snail") -> bytes:
    return jpeg_bytes(photo(label, seed, size=96))


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--no-first-run", "--disable-sync", "--disable-quic"]  # fmt: skip
ARTIFACTS = REPO / "test-artifacts"


@contextmanager
def running(app) -> Iterator[str]:
    """The app on a real uvicorn server on 127.0.0.1; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def live_server(tiny_model, tmp_path):
    """The app on a real uvicorn server on 127.0.0.1; yields (base URL, app)."""
    app = create_app(make_settings(tiny_model, tmp_path / "data"))
    with running(app) as url:
        yield url, app


def until(page, predicate: str, timeout_s: float = 30.0):
    """Poll a predicate from outside the page: the page's CSP (rightly) forbids the eval Playwright's polling uses.
    Returns its first truthy value, so what was seen in that moment can be checked after the page has moved on."""
    deadline = time.monotonic() + timeout_s
    while not (seen := page.evaluate(predicate)):
        assert time.monotonic() < deadline, f"timed out waiting for {predicate}"
        time.sleep(0.05)
    return seen


@pytest.fixture
def browser():
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (scripts/setup-services.sh installs it)")
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        yield launched
        launched.close()


def cut_at_commit(monkeypatch, rows: Callable[[], int], *, database_answers_after: bool) -> list[bool]:
    """The next COMMIT that lands a new submission reaches the database, but its reply is cut (a failover, a
    pooler restart); with ``database_answers_after`` False the database then stays unreachable to reads. Returns
    a list that holds True once the cut happened; ``monkeypatch.undo()`` ends it."""
    from sqlalchemy.exc import OperationalError
    from sqlalchemy.orm import Session, SessionTransaction

    commit, before = SessionTransaction.commit, rows()
    cut: list[bool] = []

    def commit_then_cut(self, *args, **kwargs):
        done = commit(self, *args, **kwargs)
        if not cut and rows() > before:
            cut.append(True)
            raise OperationalError("COMMIT", {}, Exception("server closed the connection unexpectedly"))
        return done

    def unreachable(self, *args, **kwargs):
        if cut:
            raise OperationalError("SELECT", {}, Exception("could not connect to server"))
        return get(self, *args, **kwargs)

    get = Session.get
    monkeypatch.setattr(SessionTransaction, "commit", commit_then_cut)
    if not database_answers_after:
        monkeypatch.setattr(Session, "get", unreachable)
    return cut
