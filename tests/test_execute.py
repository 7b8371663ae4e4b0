"""The executor without engines: git and announce steps, the audit trail per step, stopping at a failure."""

from __future__ import annotations

import pytest

from dtmon.actions import gitrepo
from dtmon.actions.audit import read
from dtmon.actions.execute import Executor, run_plan
from dtmon.actions.lock import ActionLock, LockHeld
from dtmon.actions.plan import ANNOUNCE, PULL, Plan, Step
from dtmon.config import Config, DeployConfig
from gitworld import Repo


def config_in(tmp_path) -> Config:
    return Config(None, deploy=DeployConfig(allow=True, audit=tmp_path / "audit.jsonl", lock=tmp_path / "a.lock"))


def pull_step(repo: Repo, commit: str) -> Step:
    argv = ("git", "-C", str(repo.clone), "merge", "--ff-only", commit)
    return Step(PULL, "fast-forward", " ".join(argv), argv=argv, repo=str(repo.clone), commit=commit)


def test_a_failed_announcement_stops_the_plan_before_anything_else(tmp_path):
    repo = Repo(tmp_path / "git", "datatrail", {"stacks/server-compose.yaml": "services: {a: {image: x}}\n"})
    pushed = repo.push_change("stacks/server-compose.yaml", "services: {b: {image: x}}\n")
    gitrepo.fetch(repo.clone)
    before = repo.head()
    announce = Step(ANNOUNCE, "announce", "POST http://127.0.0.1:9/hook", "chime", "datatrail",
                    payload='{"who": "x"}', url="http://127.0.0.1:9/hook")
    plan = Plan("redeploy", "chime", "datatrail", steps=(announce, pull_step(repo, pushed)), core=True,
                commits=(("chime", "datatrail", pushed),))
    result = Executor(config_in(tmp_path), plan).run()
    assert result.outcome == "failed" and result.failed_index == 0
    assert [r.status for r in result.runs] == ["failed", "pending"]
    # The webhook's path may hold its token: errors name scheme and host only.
    assert "announcement to http://127.0.0.1:9/… failed" in result.runs[0].error
    assert "/hook" not in result.runs[0].error
    assert repo.head() == before  # the step after the failed announcement never ran
    records = read(tmp_path / "audit.jsonl")
    assert [r["event"] for r in records] == ["start", "step", "outcome"]
    assert records[0]["commits"] == {"datatrail@chime": pushed} and records[0]["user"]
    assert records[2]["outcome"] == "failed" and records[2]["resume_key"][0] == ANNOUNCE


def test_each_step_is_audited_before_the_next_one_starts(tmp_path):
    repo = Repo(tmp_path / "git", "datatrail-admin", {"stacks/kko-client.yaml": "services: {a: {image: x}}\n"})
    first = repo.push_change("stacks/kko-client.yaml", "services: {b: {image: x}}\n")
    second = repo.push_change("stacks/kko-client.yaml", "services: {c: {image: x}}\n")
    gitrepo.fetch(repo.clone)
    plan = Plan("redeploy", "kko", "datatrail-client", steps=(pull_step(repo, first), pull_step(repo, second)))
    seen_when_step_2_started: list[list[dict]] = []

    def on_update(run) -> None:
        if run.index == 1 and run.status == "running":
            seen_when_step_2_started.append(read(tmp_path / "audit.jsonl"))

    result = run_plan(config_in(tmp_path), plan, on_update=on_update)
    assert result.outcome == "done" and repo.head() == second
    (records,) = seen_when_step_2_started
    assert [(r["event"], r.get("number"), r.get("status")) for r in records] == [
        ("start", None, None), ("step", 1, "done")
    ]
    assert read(tmp_path / "audit.jsonl")[-1]["outcome"] == "done"


def test_run_plan_refuses_when_the_lock_is_held(tmp_path):
    config = config_in(tmp_path)
    plan = Plan("redeploy", "kko", "datatrail-client", steps=())
    with ActionLock(tmp_path / "a.lock", "someone else's redeploy"):
        with pytest.raises(LockHeld, match="someone else's redeploy"):
            run_plan(config, plan)
    assert not (tmp_path / "audit.jsonl").exists()
