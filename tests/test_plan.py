"""The pure planner: rules of a redeploy, git guards, restart guards, resume and left-behind states."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import pytest

from dtmon.actions.plan import (
    ANNOUNCE,
    DEPLOY,
    PULL,
    REMOVE,
    RESTART,
    WAIT_CONVERGED,
    WAIT_GONE,
    WAIT_RUNNING,
    RepoState,
    left_states,
    plan_redeploy,
    plan_restart,
    resume_plan,
)
from dtmon.config import Config, DeployConfig, SiteConfig
from dtmon.model import MISSING, RUNNING, UPDATING, ServiceStatus, SiteStatus, Snapshot, StackStatus

ADMIN = Path("/repos/datatrail-admin")
CORE = Path("/repos/datatrail")
FILES = {
    ("chime", "datatrail"): CORE / "stacks/server-compose.yaml",
    ("chime", "datatrail-daemons"): CORE / "stacks/daemon-compose.yaml",
    ("chime", "datatrail-client"): ADMIN / "stacks/chime-client.yaml",
    ("kko", "datatrail-client"): ADMIN / "stacks/kko-client.yaml",
    ("gbo", "datatrail-client"): ADMIN / "stacks/gbo-client.yaml",
}
NOW = datetime(2026, 11, 25, 22, 0, tzinfo=timezone.utc)


def make_config(announce: str = "") -> Config:
    sites = []
    for name, sock in (("chime", "unix:///s/chime.sock"), ("kko", "unix:///s/kko.sock"), ("gbo", "ssh://op@aux.gbo")):
        stacks = {stack: path for (site, stack), path in FILES.items() if site == name}
        sites.append(SiteConfig(name, sock, stacks))
    return Config(None, sites=tuple(sites), deploy=DeployConfig(allow=True, announce=announce))


def service(site: str, stack: str, short: str, state: str = RUNNING, sid: str | None = "id") -> ServiceStatus:
    return ServiceStatus(
        site=site, stack=stack, service=short, name=f"{stack}_{short}", mode="replicated",
        running=1 if state == RUNNING else 0, desired=1, state=state, image="img:1", updated_at=None,
        error=None, error_at=None, failed_recent=0, id=None if state == MISSING else f"{sid}-{stack}-{short}",
        update_message="update updating" if state == UPDATING else None,
    )


def make_snapshot(unreachable: tuple[str, ...] = (), missing: tuple[tuple[str, str], ...] = ()) -> Snapshot:
    sites = []
    for name in ("chime", "kko", "gbo"):
        stacks = []
        for (site, stack), _ in FILES.items():
            if site == name:
                state = MISSING if (site, stack) in missing else RUNNING
                stacks.append(StackStatus(stack, (service(site, stack, "worker", state),)))
        sites.append(
            SiteStatus(name, reachable=name not in unreachable, error="connection failed" if name in unreachable else None,
                       stacks=tuple(stacks))
        )
    return Snapshot(NOW, tuple(sites))


def clean_repos(**changes) -> dict[Path, RepoState]:
    repos = {}
    for file in FILES.values():
        root = CORE if file.is_relative_to(CORE) else ADMIN
        repos[file] = RepoState(file=file, root=root, branch="main", upstream="origin/main",
                                head=f"{root.name}-head".ljust(40, "0"), upstream_head=f"{root.name}-head".ljust(40, "0"))
    for name, change in changes.items():
        root = CORE if name == "core" else ADMIN
        for file, state in repos.items():
            if state.root == root:
                repos[file] = replace(state, **change)
    return repos


def kinds(plan):
    return [(s.kind, s.site, s.stack) for s in plan.steps]


def test_client_redeploy_at_one_site_touches_only_that_site():
    plan = plan_redeploy(make_config(), make_snapshot(), "kko", "datatrail-client", clean_repos())
    assert plan.ok, plan.refusal
    assert kinds(plan) == [
        (REMOVE, "kko", "datatrail-client"),
        (WAIT_GONE, "kko", "datatrail-client"),
        (DEPLOY, "kko", "datatrail-client"),
        (WAIT_RUNNING, "kko", "datatrail-client"),
    ]
    assert plan.steps[0].command == "docker --host unix:///s/kko.sock stack rm datatrail-client"
    deploy = plan.steps[2]
    assert deploy.argv == (
        "docker", "--host", "unix:///s/kko.sock", "stack", "deploy", "-c", str(FILES[("kko", "datatrail-client")]),
        "datatrail-client", "--with-registry-auth",
    )
    assert deploy.commit == "datatrail-admin-head".ljust(40, "0")
    assert plan.commits == (("kko", "datatrail-client", deploy.commit),)
    assert not plan.core


def test_client_redeploy_ignores_other_unreachable_sites():
    plan = plan_redeploy(make_config(), make_snapshot(unreachable=("gbo",)), "kko", "datatrail-client", clean_repos())
    assert plan.ok


def test_core_redeploy_removes_every_dependent_first_and_deploys_in_order():
    plan = plan_redeploy(make_config(), make_snapshot(), "chime", "datatrail", clean_repos())
    assert plan.ok, plan.refusal
    assert plan.core
    order = kinds(plan)
    removals = [(site, stack) for kind, site, stack in order if kind == REMOVE]
    assert removals == [
        ("chime", "datatrail-client"), ("kko", "datatrail-client"), ("gbo", "datatrail-client"),
        ("chime", "datatrail-daemons"), ("chime", "datatrail"),
    ]
    deploys = [(site, stack) for kind, site, stack in order if kind == DEPLOY]
    assert deploys == [
        ("chime", "datatrail"), ("chime", "datatrail-daemons"),
        ("chime", "datatrail-client"), ("kko", "datatrail-client"), ("gbo", "datatrail-client"),
    ]
    # Removal is the reverse of the deploy order, one stack at a time: removed at every site, then waited
    # for until gone at every site, before the next stack (and last the core) is removed.
    clients = [("chime", "datatrail-client"), ("kko", "datatrail-client"), ("gbo", "datatrail-client")]
    first_deploy = order.index((DEPLOY, "chime", "datatrail"))
    assert order[:first_deploy] == [
        *[(REMOVE, site, stack) for site, stack in clients],
        *[(WAIT_GONE, site, stack) for site, stack in clients],
        (REMOVE, "chime", "datatrail-daemons"), (WAIT_GONE, "chime", "datatrail-daemons"),
        (REMOVE, "chime", "datatrail"), (WAIT_GONE, "chime", "datatrail"),
    ]
    # Each deploy waits for its stack to run before the next deploy.
    for i, (kind, site, stack) in enumerate(order):
        if kind == DEPLOY:
            assert order[i + 1] == (WAIT_RUNNING, site, stack)
    # The last removal is waited for before the first deploy.
    assert order.index((WAIT_GONE, "chime", "datatrail")) < order.index((DEPLOY, "chime", "datatrail"))
    assert any("announced to the collaboration" in n for n in plan.notes)
    assert any("tell the collaboration yourself" in n for n in plan.notes)
    gbo_rm = plan.steps[order.index((REMOVE, "gbo", "datatrail-client"))]
    assert gbo_rm.command == "docker --host ssh://op@aux.gbo stack rm datatrail-client"


def test_core_redeploy_refused_when_a_dependent_site_is_unreachable():
    plan = plan_redeploy(make_config(), make_snapshot(unreachable=("gbo",)), "chime", "datatrail", clean_repos())
    assert not plan.ok
    assert "gbo" in plan.refusal and "unreachable" in plan.refusal and "datatrail-client" in plan.refusal
    assert plan.steps == ()


def test_core_redeploy_announces_before_the_first_removal():
    plan = plan_redeploy(make_config(announce="http://127.0.0.1:1/hook"), make_snapshot(), "chime", "datatrail",
                         clean_repos(), who="alice@ops")
    first_removal = next(i for i, s in enumerate(plan.steps) if s.kind == REMOVE)
    announce_at = [i for i, s in enumerate(plan.steps) if s.kind == ANNOUNCE]
    assert announce_at == [0] and announce_at[0] < first_removal
    payload = json.loads(plan.steps[0].payload)
    assert payload["who"] == "alice@ops" and payload["site"] == "chime"
    assert {"site": "kko", "stack": "datatrail-client"} in payload["stacks"]
    assert len(payload["steps"]) == len(plan.steps) - 1
    assert plan.steps[0].url == "http://127.0.0.1:1/hook"


def test_non_core_redeploy_never_announces():
    plan = plan_redeploy(make_config(announce="http://127.0.0.1:1/hook"), make_snapshot(), "chime",
                         "datatrail-daemons", clean_repos())
    assert ANNOUNCE not in [s.kind for s in plan.steps]


def test_repo_behind_upstream_gets_a_visible_pull_step_and_deploys_the_upstream_commit():
    upstream = "f" * 40
    repos = clean_repos(admin={"behind": 2, "upstream_head": upstream})
    plan = plan_redeploy(make_config(), make_snapshot(), "kko", "datatrail-client", repos)
    assert plan.ok
    assert plan.steps[0].kind == PULL
    assert plan.steps[0].argv == ("git", "-C", str(ADMIN), "merge", "--ff-only", upstream)
    assert "fast-forward" in plan.steps[0].command
    deploy = next(s for s in plan.steps if s.kind == DEPLOY)
    assert deploy.commit == upstream and plan.commits[0][2] == upstream


def test_core_redeploy_pulls_each_repo_once():
    repos = clean_repos(admin={"behind": 1, "upstream_head": "a" * 40}, core={"behind": 3, "upstream_head": "c" * 40})
    plan = plan_redeploy(make_config(), make_snapshot(), "chime", "datatrail", repos)
    pulls = [s.repo for s in plan.steps if s.kind == PULL]
    assert sorted(pulls) == sorted([str(ADMIN), str(CORE)])
    assert all(s.kind == PULL for s in plan.steps[:2])


def test_every_step_of_a_plan_has_its_own_resume_key():
    repos = clean_repos(admin={"behind": 1, "upstream_head": "a" * 40}, core={"behind": 3, "upstream_head": "c" * 40})
    plan = plan_redeploy(make_config(announce="http://127.0.0.1:1/hook"), make_snapshot(), "chime", "datatrail", repos)
    keys = [s.key for s in plan.steps]
    assert len(set(keys)) == len(keys)
    second_pull = plan.steps[1]
    assert second_pull.kind == PULL and second_pull.key[3] == second_pull.repo
    assert resume_plan(plan, second_pull.key).resumed_from == 1


@pytest.mark.parametrize(
    "change, words",
    [
        ({"dirty": (" M stacks/kko-client.yaml",)}, "uncommitted changes"),
        ({"ahead": 1, "behind": 2}, "diverged"),
        ({"tracked": False}, "not committed"),
        ({"upstream": None}, "no upstream"),
        ({"branch": None}, "detached"),
        ({"error": "git fetch: could not read from remote repository"}, "could not read"),
    ],
)
def test_repo_problems_refuse_the_plan(change, words):
    plan = plan_redeploy(make_config(), make_snapshot(), "kko", "datatrail-client", clean_repos(admin=change))
    assert not plan.ok and words in plan.refusal
    assert plan.steps == ()


def test_git_that_cannot_run_refuses_the_plan_with_the_reason(tmp_path, monkeypatch, capsys):
    from dtmon.actions import gitrepo
    from dtmon.cli import main

    monkeypatch.setattr(gitrepo, "GIT", str(tmp_path / "no-such-git"))
    file = tmp_path / "kko-client.yaml"
    file.write_text("services:\n  replicator:\n    image: x\n")
    repos = gitrepo.gather([file])
    assert "git is not installed" in repos[file].error and "no-such-git" in repos[file].error
    site = SiteConfig("kko", "unix:///s/kko.sock", {"datatrail-client": file})
    plan = plan_redeploy(Config(None, sites=(site,), deploy=DeployConfig(allow=True)), make_snapshot(), "kko",
                         "datatrail-client", repos)
    assert not plan.ok and "git is not installed" in plan.refusal

    # The commands that gather repo states say so too (exit 1), instead of a traceback.
    config = tmp_path / "config.toml"
    config.write_text(f'[sites.kko]\ndocker = "unix://{tmp_path}/none.sock"\n[sites.kko.stacks]\n'
                      f'"datatrail-client" = "{file}"\n[deploy]\naudit = "{tmp_path}/audit.jsonl"\n')
    assert main(["--config", str(config), "plan", "kko", "datatrail-client"]) == 1
    assert main(["--config", str(config), "--allow-actions", "redeploy", "kko", "datatrail-client", "--yes"]) == 1
    assert "REFUSED" in capsys.readouterr().out


def test_core_redeploy_refused_when_any_deployed_repo_is_dirty():
    plan = plan_redeploy(make_config(), make_snapshot(), "chime", "datatrail",
                         clean_repos(admin={"dirty": (" M x",)}))
    assert not plan.ok and str(ADMIN) in plan.refusal


def test_ahead_only_is_allowed_with_a_note():
    plan = plan_redeploy(make_config(), make_snapshot(), "kko", "datatrail-client", clean_repos(admin={"ahead": 2}))
    assert plan.ok and any("not on origin/main" in n for n in plan.notes)


def test_unknown_site_stack_and_unreachable_site_are_refused():
    config, snap, repos = make_config(), make_snapshot(unreachable=("kko",)), clean_repos()
    assert "unknown site" in plan_redeploy(config, snap, "hco", "datatrail-client", repos).refusal
    assert "does not carry" in plan_redeploy(config, snap, "kko", "datatrail", repos).refusal
    assert "unreachable" in plan_redeploy(config, snap, "kko", "datatrail-client", repos).refusal


def test_missing_stack_is_noted_and_still_removed_so_reruns_converge():
    plan = plan_redeploy(make_config(), make_snapshot(missing=(("kko", "datatrail-client"),)), "kko",
                         "datatrail-client", clean_repos())
    assert plan.ok and plan.steps[0].kind == REMOVE
    assert any("not deployed now" in n for n in plan.notes)


def test_a_partly_deployed_stack_is_deployed_in_the_core_plans_notes():
    # gbo's client stack runs without one compose service: `docker stack ls` lists it, so removing it matters.
    snap = make_snapshot(missing=(("kko", "datatrail-client"),))
    sites = []
    for site in snap.sites:
        if site.name == "gbo":
            stacks = tuple(
                StackStatus(st.name, (service("gbo", st.name, "missing_one", MISSING), *st.services))
                for st in site.stacks
            )
            site = replace(site, stacks=stacks)
        sites.append(site)
    snap = replace(snap, sites=tuple(sites))
    gbo_client = next(st for st in snap.site("gbo").stacks if st.name == "datatrail-client")
    assert gbo_client.state == MISSING  # its worst service's state, which once made it "not deployed"
    plan = plan_redeploy(make_config(), snap, "chime", "datatrail", clean_repos())
    assert plan.ok, plan.refusal
    not_deployed = [n for n in plan.notes if "not deployed now" in n]
    assert not_deployed == ["datatrail-client at kko is not deployed now: removing it changes nothing"]


def test_plan_text_shows_every_command_and_the_commit():
    plan = plan_redeploy(make_config(), make_snapshot(), "kko", "datatrail-client", clean_repos())
    text = plan.text()
    for step in plan.steps:
        assert step.command in text
    assert f"datatrail-client at kko: {plan.steps[2].commit[:12]}" in text


def test_restart_plan_and_its_guards():
    config = make_config()
    plan = plan_restart(config, make_snapshot(), "kko", "datatrail-client_worker")
    assert plan.ok and [s.kind for s in plan.steps] == [RESTART, WAIT_CONVERGED]
    assert plan.steps[0].service_id == "id-datatrail-client-worker"
    assert "service update --force datatrail-client_worker" in plan.steps[0].command
    short = plan_restart(config, make_snapshot(), "kko", "worker")
    assert short.ok and short.target == "datatrail-client_worker"
    ambiguous = plan_restart(config, make_snapshot(), "chime", "worker")  # three chime stacks have a "worker"
    assert not ambiguous.ok and "no watched service" in ambiguous.refusal

    snap = make_snapshot()
    kko = snap.site("kko")
    updating = replace(kko, stacks=(StackStatus("datatrail-client", (service("kko", "datatrail-client", "worker",
                                                                            UPDATING),)),))
    snap = replace(snap, sites=(snap.sites[0], updating, snap.sites[2]))
    refused = plan_restart(config, snap, "kko", "datatrail-client_worker")
    assert not refused.ok and "already updating" in refused.refusal
    paused = replace(updating.stacks[0].services[0], update_paused=True, update_message="update paused: task failed")
    snap = replace(snap, sites=(snap.sites[0], replace(updating, stacks=(StackStatus("datatrail-client", (paused,)),)),
                                snap.sites[2]))
    assert plan_restart(config, snap, "kko", "datatrail-client_worker").ok  # --force is how a paused update ends
    gone = plan_restart(config, make_snapshot(missing=(("kko", "datatrail-client"),)), "kko", "datatrail-client_worker")
    assert not gone.ok and "not deployed" in gone.refusal
    assert "unreachable" in plan_restart(config, make_snapshot(unreachable=("kko",)), "kko", "worker").refusal


def test_resume_keeps_pulls_and_starts_at_the_failed_step():
    config, snap = make_config(), make_snapshot()
    first = plan_redeploy(config, snap, "kko", "datatrail-client", clean_repos())
    failed = first.steps[2]  # the deploy
    fresh = plan_redeploy(config, snap, "kko", "datatrail-client",
                          clean_repos(admin={"behind": 1, "upstream_head": "b" * 40}))
    resumed = resume_plan(fresh, failed.key)
    assert resumed.ok
    assert [s.kind for s in resumed.steps] == [PULL, DEPLOY, WAIT_RUNNING]
    assert resumed.steps[1].commit == "b" * 40
    assert resumed.resumed_from == 3
    nothing = resume_plan(fresh, ("deploy", "gbo", "datatrail-client", None))
    assert not nothing.ok and "no step" in nothing.refusal


def test_left_states_say_what_each_stack_is_left_in():
    plan = plan_redeploy(make_config(), make_snapshot(), "chime", "datatrail", clean_repos())
    order = kinds(plan)
    failed = order.index((DEPLOY, "chime", "datatrail-daemons"))
    states = left_states(plan, failed, failed)
    assert states["datatrail@chime"] == "running"
    assert states["datatrail-daemons@chime"].startswith("removed; then deploy datatrail-daemons at chime failed")
    assert states["datatrail-client@kko"] == "removed"
    early = left_states(plan, 1, 1)
    assert early["datatrail@chime"] == "untouched (as it was)"
    assert early["datatrail-client@chime"].startswith("being removed")


def test_actions_never_import_textual_and_status_does_not_load_the_planner():
    import subprocess
    import sys

    code = (
        "import sys, dtmon.cli\n"
        "dtmon.cli.build_parser()\n"
        "assert 'dtmon.actions.plan' not in sys.modules, 'status path loads the planner'\n"
        "import dtmon.actions.plan, dtmon.actions.execute, dtmon.actions.gitrepo, dtmon.actions.lock\n"
        "import dtmon.actions.audit, dtmon.actions.announce, dtmon.actions.restart, dtmon.actions.cli\n"
        "bad = sorted(m for m in sys.modules if m == 'textual' or m.startswith('textual.'))\n"
        "assert not bad, bad\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
