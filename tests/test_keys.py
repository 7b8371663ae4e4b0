"""The keys an operator reads about — the README's keys table and the help screen — are the keys the app binds.

Generic on purpose: a binding added to any dtmon class (the app, a screen, a widget) fails here until the
help screen and the README's keys table list its key, and a key left in the README after its binding went
fails too. Also: what the keys themselves do where the README promises it (home/end, ctrl+c, the views).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import time
from pathlib import Path

from textual.binding import Binding
from textual.dom import DOMNode
from textual.widgets import Static
from tui_fakes import chime, frozen_clock, kko, world

import dtmon
from dtmon.app import DtmonApp
from dtmon.config import BucketsConfig, Config, DeployConfig, PrometheusConfig
from dtmon.screens.actions import actions_app
from dtmon.screens.help import HelpScreen, key_name
from dtmon.widgets.table import ServicesTable

ROOT = Path(__file__).resolve().parent.parent
CLOSED = "http://127.0.0.1:9"  # nothing listens: the panes exist, their polls fail at once


def dtmon_classes() -> list[type]:
    """Every class in the dtmon package that declares key bindings of its own (plus the actions app)."""
    found: dict[str, type] = {}
    for info in pkgutil.walk_packages(dtmon.__path__, "dtmon."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == module.__name__ and issubclass(cls, DOMNode) and "BINDINGS" in cls.__dict__:
                found[cls.__qualname__] = cls
    found["actions"] = actions_app(DtmonApp)  # the restart/redeploy keys live on a class made at run time
    return list(found.values())


def declared_keys() -> dict[str, str]:
    """key as written in the help and README -> the class that binds it."""
    keys = {}
    for cls in dtmon_classes():
        for binding in Binding.make_bindings(cls.__dict__["BINDINGS"]):
            keys[key_name(binding)] = cls.__qualname__
    return keys


def readme_keys() -> set[str]:
    """The keys in the first column of the README's keys table (each in backticks)."""
    text = (ROOT / "README.md").read_text()
    section = text.split("### Keys", 1)[1].split("\n#", 1)[0]
    keys = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            keys |= set(re.findall(r"`([^`]+)`", line.split("|")[1]))
    return keys


def full_app(allow: bool = True) -> DtmonApp:
    """Every view there is (services, buckets, progress) and, with `allow`, the action keys."""
    config = Config(None, refresh=3600.0, timeout=1.0, buckets=BucketsConfig(CLOSED), prometheus=PrometheusConfig(CLOSED),
                    deploy=DeployConfig(allow=allow))
    cls = actions_app(DtmonApp) if allow else DtmonApp
    return cls(config, collectors=world(chime(), kko()), clock=frozen_clock)


async def until(pilot, condition, timeout: float = 30.0) -> None:  # generous: a loaded machine is slow, a pass is not
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition never held: {condition}")
        await pilot.pause(0.02)


def shown_keys(help_screen: HelpScreen) -> set[str]:
    return {key for _, keys, _ in help_screen.rows for key in keys.split(" / ")}


async def test_help_screen_and_readme_list_every_key_the_app_binds():
    app = full_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await until(pilot, lambda: app.polls >= 2)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        help_screen = app.screen
        shown = shown_keys(help_screen)
        # What is shown is what is on the screen: every row's keys and words are rendered.
        rendered = [str(w.render()) for w in help_screen.query(Static)]
        for _, keys, description in help_screen.lines:
            assert keys in rendered and description in rendered, (keys, description)

    declared = declared_keys()
    missing_from_help = {k: cls for k, cls in declared.items() if k not in shown}
    assert not missing_from_help, f"bound but not on the help screen: {missing_from_help}"
    documented = readme_keys()
    assert not shown - documented, f"on the help screen but not in the README's keys table: {shown - documented}"
    assert not documented - shown, f"in the README's keys table but bound nowhere: {documented - shown}"


async def test_help_lists_only_the_views_there_are():
    config = Config(None, refresh=3600.0, timeout=1.0)
    app = DtmonApp(config, collectors=world(chime()), clock=frozen_clock)
    async with app.run_test(size=(160, 48)):
        views = [row for row in app.help_rows() if row[0] == "Views"]
        assert views == [("Views", "1", "Show the services view")]
    app = full_app(allow=False)
    async with app.run_test(size=(160, 48)):
        views = [row[1:] for row in app.help_rows() if row[0] == "Views"]
        assert views == [("1", "Show the services view"), ("2", "Show the buckets view"),
                         ("3", "Show the progress view")]


async def test_help_wraps_a_long_description_under_its_own_column_at_80x24():
    app = full_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("question_mark")
        await pilot.pause()
        rows = list(app.screen.query(".help-row"))
        keys_x = {row.query_one(".help-keys").region.x for row in rows}
        texts = [row.query_one(".help-text") for row in rows]
        assert len(keys_x) == 1 and len({t.region.x for t in texts}) == 1  # one column each
        assert min(t.region.x for t in texts) > keys_x.pop()
        wrapped = [t for t in texts if t.region.height > 1]
        assert wrapped, "no description is long enough to wrap at 80x24"
        marks = {keys for section, keys, _ in app.screen.lines if section == "Marks"}
        assert {"▾ / ▸", "!", "▲", "BAD"} <= marks


async def test_home_and_end_move_to_the_first_and_last_row():
    app = full_app(allow=False)
    async with app.run_test(size=(160, 48)) as pilot:
        await until(pilot, lambda: app.polls >= 2)
        await pilot.pause()
        table = app.query_one(ServicesTable)
        assert app.focused is table and table.row_count > 5
        await pilot.press("end")
        assert table.cursor_row == table.row_count - 1
        await pilot.press("home")
        assert table.cursor_row == 0
        await pilot.press("down", "down", "ctrl+end")
        assert table.cursor_row == table.row_count - 1


async def test_ctrl_c_names_the_keys_that_quit_as_the_help_does():
    app = full_app(allow=False)
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.press("ctrl+c")
        await pilot.pause()
        assert app.is_running
        (notice,) = [n for n in app._notifications if n.title == "Do you want to quit?"]
        quit_keys = {key for section, keys, description in app.help_rows() if description == "Quit dtmon"
                     for key in keys.split(" / ")}
        assert quit_keys == {"q", "ctrl+q"}
        assert notice.message == "Press q or ctrl+q to quit dtmon"
        await pilot.press("q")
        await pilot.pause()
        assert not app.is_running


async def test_a_notice_given_at_start_is_shown_in_the_app():
    config = Config(None, refresh=3600.0, timeout=1.0)
    app = DtmonApp(config, collectors=world(chime()), clock=frozen_clock, notice="No dtmon config found [bold]x[/]")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert [n.message for n in app._notifications] == ["No dtmon config found [bold]x[/]"]  # markup is text
