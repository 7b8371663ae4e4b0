"""The git repositories holding compose files, through the `git` CLI: fetch, compare, fast-forward."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable
from pathlib import Path

from .plan import RepoState

GIT = "git"


class GitError(Exception):
    """A git command that failed; the message has git's own words."""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(GIT_TERMINAL_PROMPT="0", LC_ALL="C", GIT_OPTIONAL_LOCKS="0")
    return env


def git(root: Path | str, *args: str, timeout: float = 60.0, check: bool = True) -> subprocess.CompletedProcess[str]:
    """`git -C root ARGS`; raises GitError with git's message when it fails and `check`."""
    try:
        proc = subprocess.run(
            [GIT, "-C", str(root), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=_env(),
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise GitError(f"git {' '.join(args)} timed out after {timeout:g}s") from None
    except FileNotFoundError:
        raise GitError(f"git is not installed ({GIT} not found)") from None
    if check and proc.returncode != 0:
        message = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
        raise GitError(f"git {' '.join(args)}: {message[-1] if message else f'exit {proc.returncode}'}")
    return proc


def toplevel(path: Path) -> Path | None:
    """The repository root holding `path`, or None when it is not in a work tree; GitError when git fails to run."""
    directory = path if path.is_dir() else path.parent
    proc = git(directory, "rev-parse", "--show-toplevel", check=False)
    return Path(proc.stdout.strip()) if proc.returncode == 0 else None


def head(root: Path | str) -> str:
    """The commit checked out."""
    return git(root, "rev-parse", "HEAD").stdout.strip()


def dirty(root: Path | str) -> tuple[str, ...]:
    """Uncommitted changes to tracked files, as `git status --porcelain` lines."""
    out = git(root, "status", "--porcelain", "--untracked-files=no").stdout
    return tuple(line for line in out.splitlines() if line.strip())


def fetch(root: Path | str, timeout: float = 60.0) -> None:
    """`git fetch` of the current branch's remote."""
    git(root, "fetch", "--quiet", timeout=timeout)


def inspect(file: Path, do_fetch: bool = True, timeout: float = 60.0) -> RepoState:
    """The state of the repo holding `file` (fetched first unless `do_fetch` is false); never raises."""
    file = Path(file)
    try:
        root = toplevel(file)
    except GitError as exc:
        return RepoState(file=file, error=str(exc))
    if root is None:
        return RepoState(file=file, error=f"{file.parent} is not in a git repository")
    try:
        if do_fetch:
            upstream_probe = git(root, "rev-parse", "--abbrev-ref", "--symbolic-full-name", "@{u}", check=False)
            if upstream_probe.returncode == 0:
                fetch(root, timeout)
        return _read_state(file, root)
    except GitError as exc:
        return RepoState(file=file, root=root, error=str(exc))


def _read_state(file: Path, root: Path) -> RepoState:
    branch_proc = git(root, "symbolic-ref", "-q", "--short", "HEAD", check=False)
    branch = branch_proc.stdout.strip() if branch_proc.returncode == 0 else None
    up = git(root, "rev-parse", "--abbrev-ref", "--symbolic-full-name", "@{u}", check=False)
    upstream = up.stdout.strip() if up.returncode == 0 and branch else None
    commit = head(root)
    tracked = git(root, "ls-files", "--error-unmatch", "--", str(file), check=False).returncode == 0
    changes = dirty(root)
    upstream_head = None
    ahead = behind = 0
    if upstream:
        upstream_head = git(root, "rev-parse", "@{u}").stdout.strip()
        counts = git(root, "rev-list", "--left-right", "--count", "HEAD...@{u}").stdout.split()
        ahead, behind = int(counts[0]), int(counts[1])
    return RepoState(
        file=file,
        root=root,
        branch=branch,
        upstream=upstream,
        head=commit,
        upstream_head=upstream_head,
        ahead=ahead,
        behind=behind,
        dirty=changes,
        tracked=tracked,
    )


def gather(files: Iterable[Path], do_fetch: bool = True, timeout: float = 60.0) -> dict[Path, RepoState]:
    """Repo states for every compose file; each repository is fetched once. Never raises: a file whose repo
    cannot be read (git missing, timed out) gets a state with the error, which refuses the plan."""
    fetched: set[Path] = set()
    states: dict[Path, RepoState] = {}
    for file in dict.fromkeys(Path(f) for f in files):
        try:
            root = toplevel(file)
        except GitError as exc:
            states[file] = RepoState(file=file, error=str(exc))
            continue
        first = root is not None and root not in fetched
        states[file] = inspect(file, do_fetch=do_fetch and first, timeout=timeout)
        if root is not None:
            fetched.add(root)
    return states


def fast_forward(root: Path | str, commit: str, timeout: float = 60.0) -> str:
    """Fast-forward the checked-out branch of a clean repo to `commit`; returns git's summary."""
    if changes := dirty(root):
        raise GitError(f"{root} has uncommitted changes ({', '.join(c.strip() for c in changes[:3])})")
    if head(root) == commit:
        return f"already at {commit[:12]}"
    proc = git(root, "merge", "--ff-only", commit, timeout=timeout)
    return proc.stdout.strip().splitlines()[0] if proc.stdout.strip() else f"fast-forwarded to {commit[:12]}"
