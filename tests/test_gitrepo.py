"""Compose repositories through the git CLI: behind, diverged, dirty, untracked, fast-forward."""

from __future__ import annotations

import pytest

from dtmon.actions import gitrepo
from gitworld import Repo

FILE = "stacks/kko-client.yaml"


@pytest.fixture
def repo(tmp_path):
    return Repo(tmp_path, "datatrail-admin", {FILE: "services: {a: {image: x}}\n", "README": "hi\n"})


def test_clean_repo_at_upstream(repo):
    state = gitrepo.inspect(repo.clone / FILE)
    assert state.problem() is None
    assert state.root == repo.clone and state.branch == "main" and state.upstream == "origin/main"
    assert state.head == repo.head() and state.deploy_commit == repo.head()
    assert (state.ahead, state.behind) == (0, 0)


def test_behind_is_found_by_fetching_and_fast_forward_reaches_the_commit(repo):
    pushed = repo.push_change(FILE, "services: {b: {image: x}}\n")
    assert gitrepo.inspect(repo.clone / FILE, do_fetch=False).behind == 0  # not fetched yet: cannot know
    state = gitrepo.inspect(repo.clone / FILE)
    assert state.behind == 1 and state.upstream_head == pushed and state.problem() is None
    assert state.deploy_commit == pushed
    gitrepo.fast_forward(state.root, pushed)
    assert repo.head() == pushed
    assert "b:" in (repo.clone / FILE).read_text()
    assert gitrepo.fast_forward(state.root, pushed).startswith("already at")


def test_diverged_refuses(repo):
    repo.push_change(FILE, "services: {b: {image: x}}\n")
    repo.local_commit("README", "local\n")
    state = gitrepo.inspect(repo.clone / FILE)
    assert (state.ahead, state.behind) == (1, 1)
    assert "diverged" in state.problem()


def test_dirty_refuses_and_blocks_fast_forward(repo):
    pushed = repo.push_change("README", "new\n")
    (repo.clone / FILE).write_text("services: {edited: {image: x}}\n")
    state = gitrepo.inspect(repo.clone / FILE)
    assert "uncommitted changes" in state.problem() and FILE in state.problem()
    with pytest.raises(gitrepo.GitError, match="uncommitted"):
        gitrepo.fast_forward(repo.clone, pushed)


def test_untracked_compose_file_and_no_repo_refuse(repo, tmp_path):
    (repo.clone / "stacks/new.yaml").write_text("services: {a: {image: x}}\n")
    assert "not committed" in gitrepo.inspect(repo.clone / "stacks/new.yaml").problem()
    loose = tmp_path / "loose" / "c.yaml"
    loose.parent.mkdir()
    loose.write_text("x")
    assert "not in a git repository" in gitrepo.inspect(loose).problem()


def test_unreachable_upstream_is_a_problem_not_a_crash(repo):
    repo.upstream.rename(repo.upstream.with_name("moved.git"))
    state = gitrepo.inspect(repo.clone / FILE)
    assert state.error and "fetch" in state.problem()


def test_gather_covers_every_file_of_a_repo_fetched_once(repo):
    repo.push_change("README", "new\n")
    other_file = repo.clone / "README"
    states = gitrepo.gather([repo.clone / FILE, other_file, repo.clone / FILE])
    assert set(states) == {repo.clone / FILE, other_file}
    assert all(s.root == repo.clone and s.behind == 1 for s in states.values())
