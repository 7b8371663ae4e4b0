"""SVG snapshots of the action dialogs on a fixed world, time frozen.

Update after an intended change with `pytest tests/test_actions_snapshots.py --snapshot-update`.
"""

from __future__ import annotations

import time

import pytest

from dtmon.actions.plan import plan_redeploy
from dtmon.app import DtmonApp
from dtmon.screens.actions import ConfirmPlan, app_class
from tests.test_actions_tui import FakeCollector
from tests.test_plan import NOW, clean_repos, make_config, make_snapshot


@pytest.fixture(autouse=True)
def utc(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def make_app():
    config = make_config()
    return app_class(DtmonApp, config)(
        config, collectors=[FakeCollector(s) for s in config.sites], clock=lambda: NOW, tick=3600
    )


async def polled(pilot) -> None:
    deadline = time.monotonic() + 5
    while pilot.app.polls < len(pilot.app.order):
        assert time.monotonic() < deadline
        await pilot.pause(0.02)
    await pilot.pause()


def test_core_redeploy_confirm(snap_compare):
    plan = plan_redeploy(make_config(announce="http://hooks.example/dt"), make_snapshot(), "chime", "datatrail",
                         clean_repos(admin={"behind": 1, "upstream_head": "a" * 40}), who="alice@ops")

    async def run_before(pilot):
        await polled(pilot)
        pilot.app.push_screen(ConfirmPlan(plan))
        await pilot.pause()

    assert snap_compare(make_app(), terminal_size=(140, 48), run_before=run_before)


def test_refused_plan(snap_compare):
    plan = plan_redeploy(make_config(), make_snapshot(unreachable=("gbo",)), "chime", "datatrail", clean_repos())

    async def run_before(pilot):
        await polled(pilot)
        pilot.app.push_screen(ConfirmPlan(plan))
        await pilot.pause()

    assert snap_compare(make_app(), terminal_size=(80, 24), run_before=run_before)
