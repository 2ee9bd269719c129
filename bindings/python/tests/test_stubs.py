"""The type stubs (`secumon/_secumon.pyi`) against the built module, by mypy's stubtest: a
class, method, parameter or default the stub and the module disagree on fails here."""

import importlib.util
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

import secumon

PACKAGE = pathlib.Path(secumon.__file__).resolve().parent


def stubtest(search_path, workdir):
    """mypy's stubtest on the `secumon` package under `search_path` (module and stubs)."""
    if importlib.util.find_spec("mypy") is None:
        missing = "mypy is not installed in this Python (pip install mypy)"
        if os.environ.get("SECUMON_TEST_STRICT", "0") not in ("", "0"):
            pytest.fail(missing)
        pytest.skip(f"SKIPPED: {missing}")
    env = dict(os.environ, PYTHONPATH=str(search_path), MYPYPATH=str(search_path))
    # In `workdir`: mypy keeps its cache in the working directory.
    return subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "secumon", "--mypy-config-file", os.devnull],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=600,
    )


def test_the_stubs_match_the_module(tmp_path):
    result = stubtest(PACKAGE.parent, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_stubtest_fails_on_a_stub_that_disagrees(tmp_path):
    # The package copied beside a stub with two mistakes, the native module linked in.
    copy = tmp_path / "path" / "secumon"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    for native in PACKAGE.glob("*.so"):
        (copy / native.name).symlink_to(native)
    stub = copy / "_secumon.pyi"
    text = stub.read_text()
    wrong = text.replace('period: str = "1h"', 'period: str = "2h"', 1).replace(
        "class AsyncClient:", "class AsyncClient:\n    def close(self) -> None: ...", 1)
    assert wrong.count("\n") == text.count("\n") + 1 and '"2h"' in wrong
    stub.write_text(wrong)
    result = stubtest(copy.parent, tmp_path)
    assert result.returncode != 0, result.stdout
    assert "secumon._secumon.Client.query" in result.stdout, result.stdout
    assert "secumon._secumon.AsyncClient.close" in result.stdout, result.stdout
