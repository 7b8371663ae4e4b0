"""Real git repositories for tests: a bare "upstream", the operator's clone, and a colleague's clone to push from."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ENV = {
    "GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.invalid",
    "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.invalid",
    "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_SYSTEM": "/dev/null",
}


def git(cwd: Path, *args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, env={**os.environ, **ENV})
    if proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} in {cwd}: {proc.stderr.strip()}")
    return proc.stdout.strip()


class Repo:
    """upstream.git (bare) + clone (what dtmon deploys from) + other (a colleague who pushes)."""

    def __init__(self, base: Path, name: str, files: dict[str, str]) -> None:
        self.upstream = base / f"{name}.git"
        self.clone = base / name
        self.other = base / f"{name}-other"
        base.mkdir(parents=True, exist_ok=True)
        git(base, "init", "-q", "--bare", "-b", "main", str(self.upstream))
        git(base, "clone", "-q", str(self.upstream), str(self.other))
        git(self.other, "checkout", "-q", "-b", "main")
        for rel, text in files.items():
            (self.other / rel).parent.mkdir(parents=True, exist_ok=True)
            (self.other / rel).write_text(text)
        git(self.other, "add", "-A")
        git(self.other, "commit", "-q", "-m", "initial")
        git(self.other, "push", "-q", "-u", "origin", "main")
        git(base, "clone", "-q", str(self.upstream), str(self.clone))

    def head(self) -> str:
        return git(self.clone, "rev-parse", "HEAD")

    def push_change(self, rel: str, text: str, message: str = "change") -> str:
        """A colleague commits and pushes; returns the new upstream commit."""
        git(self.other, "pull", "-q", "--ff-only")
        (self.other / rel).write_text(text)
        git(self.other, "commit", "-q", "-am", message)
        git(self.other, "push", "-q")
        return git(self.other, "rev-parse", "HEAD")

    def local_commit(self, rel: str, text: str, message: str = "local") -> str:
        (self.clone / rel).write_text(text)
        git(self.clone, "commit", "-q", "-am", message)
        return self.head()

    def reset_to_upstream(self) -> None:
        git(self.clone, "fetch", "-q")
        git(self.clone, "reset", "-q", "--hard", "origin/main")
