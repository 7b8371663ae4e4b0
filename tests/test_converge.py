"""The convergence rule on engine JSON: new-spec tasks only, a stability period, an early end for a crash loop."""

from __future__ import annotations

import pytest

from dtmon.actions.converge import NotConverging, Watch, of_spec

TEMPLATE = {"ContainerSpec": {"Image": "img:1", "Args": ["sleep", "1d"]}, "ForceUpdate": 2, "Runtime": "container"}


def service(template=TEMPLATE, update: str | None = None, mode=None) -> dict:
    svc = {"ID": "svc1", "Spec": {"Name": "dt_worker", "TaskTemplate": template,
                                  "Mode": mode or {"Replicated": {"Replicas": 2}}}}
    if update:
        svc["UpdateStatus"] = {"State": update, "Message": "update paused due to failure or early termination"}
    return svc


def task(task_id: str, state: str, force: int = 2, err: str | None = None, at: str = "2026-12-02T15:00:00Z") -> dict:
    spec = {"ContainerSpec": {"Image": "img:1", "Args": ["sleep", "1d"]}, "ForceUpdate": force}  # the API omits Runtime
    desired = "running" if state in ("running", "starting", "ready") else "shutdown"
    status = {"State": state, "Timestamp": at, **({"Err": err} if err else {})}
    return {"ID": task_id, "ServiceID": "svc1", "Spec": spec, "DesiredState": desired, "Status": status}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_task_of_the_old_spec_is_not_counted():
    assert of_spec(task("a", "running"), service())
    assert not of_spec(task("a", "running", force=1), service())
    clock = Clock()
    watch = Watch(monitor=10, max_failures=3, clock=clock)
    count = watch.observe(service(), [task("old1", "running", force=1), task("old2", "running", force=1),
                                      task("new1", "running")], 2)
    assert (count.running, count.desired, count.steady) == (1, 2, None)


def test_converged_only_after_the_stability_period_with_no_failure():
    clock = Clock()
    watch = Watch(monitor=10, max_failures=3, clock=clock)
    tasks = [task("a", "running"), task("b", "running")]
    assert watch.verdict([watch.observe(service(), tasks, 2)])[0] is False  # running, not yet for 10 s
    clock.now += 9.9
    done, note = watch.verdict([watch.observe(service(), tasks, 2)])
    assert not done and "watching 10s for failures" in note and "worker 2/2" in note
    clock.now += 0.2
    assert watch.verdict([watch.observe(service(), tasks, 2)])[0] is True


def test_a_task_replaced_between_samples_starts_the_period_again():
    clock = Clock()
    watch = Watch(monitor=10, max_failures=3, clock=clock)
    watch.observe(service(), [task("a", "running"), task("b", "running")], 2)
    clock.now += 8
    # b crashed and c replaced it between two samples: all running again, but not steady.
    count = watch.observe(service(), [task("a", "running"), task("b", "failed", err="task: non-zero exit (1)"),
                                      task("c", "running")], 2)
    assert count.failures == 1 and count.steady == 0.0 and count.last_error == "task: non-zero exit (1)"
    clock.now += 9
    assert not watch.verdict([watch.observe(service(), [task("a", "running"), task("c", "running")], 2)])[0]
    clock.now += 1.5
    assert watch.verdict([watch.observe(service(), [task("a", "running"), task("c", "running")], 2)])[0]


def test_a_service_that_keeps_failing_ends_the_wait_naming_it_the_error_and_the_count():
    clock = Clock()
    watch = Watch(monitor=10, max_failures=3, clock=clock)
    failed = []
    for n, at in enumerate(("2026-12-02T15:00:03.5Z", "2026-12-02T15:00:11.25Z")):
        failed.append(task(f"f{n}", "failed", err=f"task: non-zero exit ({n + 1})", at=at))
        count = watch.observe(service(), failed + [task("r", "running")], 1)
        assert count.failures == n + 1
    # The latest error by time, not the last listed; "rejected" counts as a failure too.
    rejected = task("f2", "rejected", err="no suitable node", at="2026-12-02T15:00:19.9Z")
    with pytest.raises(NotConverging) as stop:
        watch.observe(service(), [rejected] + failed, 1)
    text = str(stop.value)
    assert "dt_worker keeps failing" in text and "3 tasks of the new spec failed" in text
    assert "last error: no suitable node" in text


def test_failures_of_old_tasks_do_not_count():
    watch = Watch(monitor=0, max_failures=1, clock=Clock())
    count = watch.observe(service(), [task("old", "failed", force=1, err="boom"), task("a", "running")], 1)
    assert count.failures == 0 and watch.verdict([count])[0] is True


def test_a_paused_or_rolled_back_update_ends_the_wait():
    watch = Watch(monitor=10, max_failures=3, clock=Clock())
    with pytest.raises(NotConverging, match="dt_worker: update paused: update paused due to failure"):
        watch.observe(service(update="paused"), [task("a", "running")], 1)
    with pytest.raises(NotConverging, match="update rollback started"):
        watch.observe(service(update="rollback_started"), [], 1)
    count = watch.observe(service(update="updating"), [task("a", "running")], 1)
    assert count.steady is None and "(update updating)" in count.text()
    # The same task once the update has completed: the period starts now.
    count = watch.observe(service(update="completed"), [task("a", "running")], 1)
    assert count.steady == 0.0


def test_server_text_in_a_note_is_one_clean_line():
    watch = Watch(monitor=10, max_failures=5, clock=Clock())
    count = watch.observe(service(), [task("f", "failed", err="bad\x1b[31m\nline")], 1)
    assert count.last_error == "bad^[[31m^Jline"  # visible, and nothing a terminal acts on


def test_monitor_and_max_task_failures_are_config_keys_checked_with_one_line(tmp_path):
    from dtmon.config import ConfigError, load

    path = tmp_path / "config.toml"
    site = '[sites.kko]\ndocker = "unix:///run/kko.sock"\n'
    path.write_text(site + "[deploy]\nmonitor = 4.5\nmax_task_failures = 2\n")
    deploy = load(path).deploy
    assert (deploy.monitor, deploy.max_task_failures) == (4.5, 2)
    path.write_text(site + "[deploy]\n")
    assert (load(path).deploy.monitor, load(path).deploy.max_task_failures) == (15.0, 3)
    path.write_text(site + "[deploy]\nmonitor = -1\n")
    with pytest.raises(ConfigError, match=r"deploy.monitor: expected a number of seconds from 0 to 3600, got -1"):
        load(path)
    path.write_text(site + "[deploy]\nmax_task_failures = 0\n")
    with pytest.raises(ConfigError, match="deploy.max_task_failures: expected a count from 1 to 1000, got 0"):
        load(path)


def test_a_service_not_created_yet_keeps_the_wait_going_and_is_named():
    clock = Clock()
    watch = Watch(monitor=0, max_failures=3, clock=clock)
    count = watch.observe(service(), [task("a", "running"), task("b", "running")], 2)
    done, note = watch.verdict([count], prefix="dt_", missing=["dt_ghost"])
    assert not done and note == "1/2 services steady: ghost not created yet, worker 2/2"
    assert watch.verdict([count], prefix="dt_") == (True, "1/1 services steady: worker 2/2")
