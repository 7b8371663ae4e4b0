"""Real peers for the buckets tests: dtmon's Buckets-compatible server on loopback, and the official
`workflow-core` client run in its own venv (prepared by scripts/prepare-workflow-venv) in a subprocess.

Import the fixtures into a test module: ``from buckets_peers import buckets_server, workflow  # noqa: F401``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dtmon.demo.buckets_server import BucketsServer
from dtmon.workflow_env import TOKEN_VARS

ROOT = Path(__file__).resolve().parent.parent
PREPARE = ROOT / "scripts" / "prepare-workflow-venv"
CLIENT = Path(__file__).resolve().parent / "workflow_client.py"


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


class Workflow:
    """The official Buckets client against one URL: each call is one subprocess, its JSON answer returned."""

    def __init__(self, python: Path) -> None:
        self.python = python

    def __call__(self, url: str, *args: str, env: dict[str, str] | None = None) -> Any:
        """`env` replaces the token variables of this process's environment (WORKFLOW_HTTP_TOKEN & co)."""
        environ = dict(os.environ)
        if env is not None:
            environ = {k: v for k, v in environ.items() if k.upper() not in TOKEN_VARS} | env
        result = subprocess.run(
            [str(self.python), str(CLIENT), url, *args], capture_output=True, text=True, timeout=120, env=environ
        )
        if result.returncode != 0:
            raise AssertionError(f"workflow-core client failed ({result.returncode}): {result.stdout}{result.stderr}")
        return json.loads(result.stdout.strip().splitlines()[-1])

    def deposit(self, url: str, pipeline: str, count: int, site: str = "chime") -> list[str]:
        return self(url, "deposit", pipeline, str(count), "--site", site)["deposited"]

    def withdraw(self, url: str, pipeline: str, count: int, finish: str = "success") -> list[str]:
        return self(url, "withdraw", pipeline, str(count), "--finish", finish)["withdrawn"]

    def delete(self, url: str, pipeline: str, status: str | None = None) -> bool:
        return self(url, "delete", pipeline, *(["--status", status] if status else []))["deleted"]

    def status(self, url: str, pipeline: str) -> dict[str, int]:
        return self(url, "status", pipeline)

    def pipelines(self, url: str) -> list[str]:
        return self(url, "pipelines")


@pytest.fixture(scope="session")
def workflow() -> Workflow:
    """The official client, its venv (.venv-workflow) prepared when missing; fails under CI if it cannot be."""
    env = dict(os.environ, PYTHON=sys.executable)
    env["HOME"] = os.environ.get("DTMON_TEST_REAL_HOME") or env.get("HOME", "")  # pip's own config lives there
    try:
        result = subprocess.run([str(PREPARE)], capture_output=True, text=True, timeout=600, env=env)
    except (OSError, subprocess.TimeoutExpired) as exc:
        result = None
        reason = str(exc)
    else:
        reason = result.stderr.strip()[-2000:]
    if result is None or result.returncode != 0:
        message = f"workflow-core venv could not be prepared by {PREPARE}: {reason}"
        if _in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    venv = Path(result.stdout.strip().splitlines()[-1])
    return Workflow(venv / "bin" / "python")


@pytest.fixture
def buckets_server():
    """A fresh Buckets-compatible server on a free loopback port, stopped afterwards."""
    server = BucketsServer().start()
    try:
        yield server
    finally:
        server.stop()
