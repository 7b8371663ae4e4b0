"""S (scale) and U (rollback) in the dashboard without engines: the replicas dialog checks what is typed, the
plan comes first with Cancel focused, a refusal is audited, and both keys act only on a visible service."""

from __future__ import annotations

import time
from pathlib import Path

from textual.widgets import Button, Input, Static
from tui_fakes import chime, kko, world

from dtmon.actions.audit import read
from dtmon.app import DtmonApp
from dtmon.config import Config, DeployConfig, SiteConfig
from dtmon.screens.actions import ConfirmPlan, ScaleDialog, app_class
from dtmon.widgets.table import ServicesTable

KEY = "chime/datatrail-client_replicator"


def make_app(tmp_path: Path, allow: bool = True):
    compose = tmp_path / "client.yaml"
    compose.write_text("services:\n  replicator:\n    image: x\n    deploy:\n      replicas: 1\n")
    sites = tuple(SiteConfig(name, f"unix:///nonexistent/{name}.sock", {"datatrail-client": compose})
                  for name in ("chime", "kko"))
    deploy = DeployConfig(allow=allow, audit=tmp_path / "audit.jsonl", lock=tmp_path / "actions.lock")
    config = Config(None, refresh=3600, timeout=2.0, sites=sites, deploy=deploy)
    return app_class(DtmonApp, config)(config, collectors=world(chime(), kko()), tick=60)


async def until(pilot, condition, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        await pilot.pause(0.02)


async def select(app, pilot, key: str) -> None:
    table = app.query_one(ServicesTable)
    await until(pilot, lambda: table.row_for(key) is not None, f"the row {key}")
    table.move_cursor(row=table.get_row_index(key))
    await pilot.pause()


async def test_S_asks_how_many_replicas_refuses_a_bad_number_and_shows_the_plan_with_cancel_focused(tmp_path):
    app = make_app(tmp_path)
    async with app.run_test(size=(120, 30)) as pilot:
        await until(pilot, lambda: app.polls >= 2, "the sites")
        await select(app, pilot, KEY)
        await pilot.press("S")
        await until(pilot, lambda: isinstance(app.screen, ScaleDialog), "the scale dialog")
        box = app.screen.query_one("#replicas", Input)
        assert app.focused is box
        box.value = "9999999"
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, ScaleDialog)  # stays, and says why
        assert "from 0 to 1000000" in str(app.screen.query_one("#scale-error", Static).render())
        box.value = "4"
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ConfirmPlan), "the confirm dialog")
        assert app.focused is app.screen.query_one("#cancel", Button)
        plan = app.screen.plan
        assert plan.ok and plan.title == "scale datatrail-client_replicator at chime to 4"
        text = str(app.screen.query_one("#confirm-plan-text", Static).render())
        assert "service scale datatrail-client_replicator=4" in text
        assert "the next redeploy puts it back to 1" in text
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmPlan)
        await pilot.press("S")
        await until(pilot, lambda: isinstance(app.screen, ScaleDialog), "the scale dialog again")
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, (ScaleDialog, ConfirmPlan))
    assert read(tmp_path / "audit.jsonl") == []  # nothing ran, nothing was refused


async def test_U_whose_engine_cannot_be_read_is_a_refusal_shown_and_audited(tmp_path):
    app = make_app(tmp_path)
    async with app.run_test(size=(120, 30)) as pilot:
        await until(pilot, lambda: app.polls >= 2, "the sites")
        await select(app, pilot, KEY)
        await pilot.press("U")
        await until(pilot, lambda: isinstance(app.screen, ConfirmPlan), "the dialog", timeout=30)
        assert not app.screen.plan.ok
        assert "cannot read datatrail-client_replicator's spec at chime" in app.screen.plan.refusal
        assert app.screen.query_one("#cancel", Button).label.plain == "Close"
    records = read(tmp_path / "audit.jsonl")
    assert [(r["outcome"], r["action"], r["target"]) for r in records] == [
        ("refused", "rollback", "datatrail-client_replicator")]


async def test_S_and_U_on_a_stack_row_act_on_nothing_and_read_only_has_no_such_keys(tmp_path):
    app = make_app(tmp_path)
    async with app.run_test(size=(120, 30)) as pilot:
        await until(pilot, lambda: app.polls >= 2, "the sites")
        await select(app, pilot, "stack:chime/datatrail-client")
        await pilot.press("S", "U")
        await pilot.pause()
        assert not isinstance(app.screen, (ScaleDialog, ConfirmPlan))
        assert any("select a service to scale" in n.message for n in app._notifications)
        assert any("select a service to roll back" in n.message for n in app._notifications)
    plain = make_app(tmp_path, allow=False)
    assert type(plain) is DtmonApp
    assert not {"S", "U"} & {b.key for b in DtmonApp.BINDINGS}
