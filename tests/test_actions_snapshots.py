"""SVG snapshots of the confirm dialog for fixed plans (times shown in UTC).

Update after an intended change with `pytest tests/test_actions_snapshots.py --snapshot-update`.
"""

from __future__ import annotations

import time

import pytest

from test_plan import clean_repos, make_config, make_snapshot
from textual.app import App, ComposeResult
from textual.widgets import Static

from dtmon.actions.plan import plan_redeploy
from dtmon.screens.actions import ConfirmPlan


@pytest.fixture(autouse=True)
def utc(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


class DialogHost(App):
    """A bare app behind the dialog: the snapshot shows the dialog, not the dashboard (which has its own)."""

    def compose(self) -> ComposeResult:
        yield Static("dashboard")


def test_core_redeploy_confirm(snap_compare):
    plan = plan_redeploy(make_config(announce="http://hooks.example/dt"), make_snapshot(), "chime", "datatrail",
                         clean_repos(admin={"behind": 1, "upstream_head": "a" * 40}), who="alice@ops")

    async def run_before(pilot):
        pilot.app.push_screen(ConfirmPlan(plan))
        await pilot.pause()

    assert snap_compare(DialogHost(), terminal_size=(140, 48), run_before=run_before)


def test_core_redeploy_confirm_at_80x24_shows_the_steps_first(snap_compare):
    plan = plan_redeploy(make_config(announce="http://hooks.example/dt"), make_snapshot(), "chime", "datatrail",
                         clean_repos(admin={"behind": 1, "upstream_head": "a" * 40}), who="alice@ops")

    async def run_before(pilot):
        pilot.app.push_screen(ConfirmPlan(plan))
        await pilot.pause()

    assert snap_compare(DialogHost(), terminal_size=(80, 24), run_before=run_before)


def test_refused_plan(snap_compare):
    plan = plan_redeploy(make_config(), make_snapshot(unreachable=("gbo",)), "chime", "datatrail", clean_repos())

    async def run_before(pilot):
        pilot.app.push_screen(ConfirmPlan(plan))
        await pilot.pause()

    assert snap_compare(DialogHost(), terminal_size=(80, 24), run_before=run_before)
