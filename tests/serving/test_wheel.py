"""The wheel as a user installs it: built from this tree, installed into a fresh virtual environment with
the serve extra only (no torch), then `pestid predict`, `pestid serve` and the farmer's page, away from the
source tree. The same environment then runs the serving tests, which proves they need no torch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, pestid_serve
from tests.onnx_models import linear_model
from tests.serving.conftest import jpeg

pytestmark = [pytest.mark.slow, pytest.mark.server]


def _run(*args: str | Path, cwd: Path, timeout: float = 900, env: dict[str, str] | None = None) -> str:
    done = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    assert done.returncode == 0, f"{args}: {done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def serve_env(tmp_path_factory) -> Path:
    """A fresh venv holding only the built wheel with [serve], and what the serving tests use."""
    work = tmp_path_factory.mktemp("wheel")
    _run(sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", work / "dist", REPO, cwd=work)
    wheel = next((work / "dist").glob("pestid-*.whl"))
    _run(sys.executable, "-m", "venv", work / "venv", cwd=work)
    python = work / "venv" / "bin" / "python"
    _run(python, "-m", "pip", "install", "--quiet", f"{wheel}[serve]", "pytest", "httpx", "onnx", cwd=work)
    return work / "venv"


def test_the_wheel_holds_the_package_data_and_no_torch(serve_env):
    python = serve_env / "bin" / "python"
    script = ("import importlib.util as u, importlib.resources as r; "
              "print(u.find_spec('torch') is None, u.find_spec('training') is None, u.find_spec('serving') is None, "
              "r.files('pestid.serving').joinpath('static/index.html').is_file(), "
              "r.files('pestid.serving').joinpath('migrations/versions').is_dir(), "
              "r.files('pestid.training').joinpath('configs/default.yaml').is_file())")  # fmt: skip
    assert _run(python, "-c", script, cwd=serve_env).split() == ["True"] * 6


def test_pestid_predict_serve_and_the_farmer_page_from_the_installed_wheel(serve_env, tmp_path, browser):
    model = linear_model(tmp_path / "model.onnx")
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(jpeg(3, "brown_planthopper"))
    pestid = serve_env / "bin" / "pestid"
    answer = json.loads(_run(pestid, "predict", "--model", model, photo, "--json", cwd=tmp_path))
    assert answer[0]["top"] and answer[0]["decision"] in {"identified", "uncertain", "not_recognised"}

    with pestid_serve([str(pestid), "serve", "--model", str(model)], tmp_path / "data", cwd=tmp_path) as url:
        page = browser.new_page(viewport={"width": 360, "height": 740})
        page.goto(f"{url}/")
        assert page.locator("h1").inner_text() == "Nhận diện sâu bệnh lúa"
        page.set_input_files("input[type=file]", str(photo))
        page.locator("button[type=submit]").click()
        page.wait_for_selector("#decision:not(:empty)", timeout=30_000)
        decision = page.locator("#decision").inner_text()
    assert any(w in decision for w in ("Đã nhận diện", "Chưa chắc chắn", "Không nhận ra"))


def test_the_serving_tests_pass_in_the_serve_only_environment(serve_env, tmp_path):
    """Away from the source tree, so `pestid` is the installed wheel's; browser tests skip there (no Playwright)."""
    tests = tmp_path / "tests"
    shutil.copytree(
        REPO / "tests", tests, ignore=shutil.ignore_patterns("training", "pestid", "__pycache__", "test_*.py")
    )
    shutil.copytree(REPO / "tests" / "serving", tests / "serving", dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__", "test_wheel.py"))  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    out = _run(serve_env / "bin" / "python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not browser",
               tests / "serving", cwd=tmp_path, env=env)  # fmt: skip
    assert " passed" in out and "failed" not in out
    where = _run(serve_env / "bin" / "python", "-c", "import pestid; print(pestid.__file__)", cwd=tmp_path, env=env)
    assert str(serve_env) in where
