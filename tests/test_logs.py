"""Logs: parsing the engine's `timestamps&details` stream (pure) and the detail screen's log pane (Pilot)."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest
from tui_fakes import FakeCollector, chime, fake_config, frozen_clock, tasks_for

from dtmon.app import DtmonApp
from dtmon.collectors.logs import (
    LogEntry,
    TaskNames,
    format_entry,
    parse_duration,
    parse_entry,
    parse_since,
    split_lines,
)
from dtmon.collectors.swarm import ServiceDetail
from dtmon.screens.detail import DetailScreen, search
from dtmon.sanitize import LogLine

RAW = ("2026-12-02T16:50:44.058060390Z com.docker.swarm.node.id=node1,com.docker.swarm.service.id=svc1,"
       "com.docker.swarm.task.id=task1abcdefghijk hello world")


def test_an_engine_line_gives_its_time_task_node_and_text():
    entry = parse_entry(RAW)
    assert entry.text == "hello world"
    assert entry.time == datetime(2026, 12, 2, 16, 50, 44, 58060, tzinfo=timezone.utc)
    assert entry.time_text == "2026-12-02T16:50:44.058060390Z"
    assert (entry.task_id, entry.node_id) == ("task1abcdefghijk", "node1")
    names = TaskNames({"task1abcdefghijk": ("dt_inventory", 2)}, {"node1": "chime-node"})
    assert names.source(entry) == "dt_inventory.2.task1abcdefg@chime-node"
    assert format_entry(entry, names, timestamps=False) == "dt_inventory.2.task1abcdefg@chime-node | hello world"
    assert format_entry(entry, names, timestamps=True).startswith("2026-12-02T16:50:44.058060390Z dt_inventory.2.")
    # Unknown ids are shown short, as docker does.
    assert TaskNames({}, {}).source(entry) == "task1abcdefg@node1"


def test_escape_sequences_in_a_line_are_dropped_but_colours_and_the_text_stay():
    entry = parse_entry(RAW.replace("hello world", "\x1b[31mred\x1b[0m \x1b]0;owned\x07\x1bc\x9b2Jok\x07"))
    assert entry.text == "red ok^G"
    assert entry.line.sgr == ((0, "31"), (3, "0"))
    coloured = format_entry(entry, TaskNames({}, {}), timestamps=False, colour=True)
    assert "\x1b]" not in coloured and "\x1bc" not in coloured and "\x9b" not in coloured
    assert "\x1b[31mred" in coloured


def test_a_line_without_timestamp_or_details_is_kept_whole_and_trusted_for_nothing():
    entry = parse_entry("com.docker.swarm.task.id=x but no time")
    assert entry.time is None and entry.task_id == "x" and entry.text == "but no time"
    entry = parse_entry("just text, 2026-12-02T16:50:44Z inside")
    assert (entry.text, entry.task_id, entry.time) == ("just text, 2026-12-02T16:50:44Z inside", "", None)
    entry = parse_entry("2026-12-02T16:50:44Z plain=words here")  # labels that are not the swarm's stay text
    assert entry.text == "plain=words here"


def test_lines_are_split_across_frames_and_a_line_without_newline_is_bounded():
    assert list(split_lines([b"a\nb", b"c\n", b"d"])) == ["a", "bc", "d"]
    assert list(split_lines([b"\xff\n"])) == ["\ufffd"]
    long = list(split_lines([b"x" * 50] * 10, limit=100))
    assert all(len(line) <= 100 for line in long) and "".join(long) == "x" * 500


@pytest.mark.parametrize("text,seconds", [("30s", 30), ("10m", 600), ("2h", 7200), ("1h30m", 5400), ("1m30s", 90)])
def test_since_durations(text, seconds):
    assert parse_duration(text) == seconds
    now = datetime(2026, 12, 2, tzinfo=timezone.utc)
    assert parse_since(text, now) == now - timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "10", "1x", "0s", "-5m", "99999999h", "1e3s", "10ms"])
def test_bad_since_is_one_clear_line(text):
    with pytest.raises(ValueError, match="expected a duration"):
        parse_duration(text)


def test_since_takes_an_rfc3339_time():
    assert parse_since("2026-12-02T10:00:00Z", datetime.now(timezone.utc)) == datetime(2026, 12, 2, 10, tzinfo=timezone.utc)


def test_search_wraps_both_ways_and_ignores_case():
    lines = ["a", "Error one", "b", "error two"]
    assert search(lines, "ERROR", -1, 1) == 1
    assert search(lines, "error", 1, 1) == 3
    assert search(lines, "error", 3, 1) == 1
    assert search(lines, "error", 1, -1) == 3
    assert search(lines, "nothing", 0, 1) is None


def detail_with_sources(service) -> ServiceDetail:
    base = tasks_for(service)
    entries = tuple(
        LogEntry(LogLine(f"line {i} {'ERROR' if i % 3 == 0 else 'ok'}"),
                 time=datetime(2026, 11, 25, 21, 30 + i, tzinfo=timezone.utc),
                 time_text=f"2026-11-25T21:3{i % 10}:00.000000001Z",
                 source=f"{service.name}.1.t-new@frob-node")
        for i in range(1, 10)
    )
    return ServiceDetail(tasks=base.tasks, logs=tuple(e.line for e in entries), entries=entries)


async def open_inventory(pilot, app):
    deadline = time.monotonic() + 5
    while app.polls < 1 and time.monotonic() < deadline:
        await pilot.pause(0.02)
    service = app.service("chime/datatrail-daemons_inventory")
    app.push_screen(DetailScreen(service, app.collectors["chime"], 3600.0, frozen_clock))
    await pilot.pause()
    screen = app.screen
    while screen.fetches < 1 and time.monotonic() < deadline:
        await pilot.pause(0.02)
    return screen


def shown(screen) -> list[str]:
    return [strip.text.rstrip() for strip in screen.query_one("#logs").lines]


def label(screen) -> str:
    return str(screen.query_one("#logs-label").render())


async def test_log_pane_shows_source_toggles_times_searches_and_holds():
    collector = FakeCollector(chime(), detail=detail_with_sources)
    app = DtmonApp(fake_config(), collectors=[collector], clock=frozen_clock)
    async with app.run_test(size=(160, 48)) as pilot:
        screen = await open_inventory(pilot, app)
        assert shown(screen)[0] == "1.t-new@frob-node │ line 1 ok"  # the service is the screen's: not repeated
        await pilot.press("T")
        assert shown(screen)[0] == "11-25 21:31:00 1.t-new@frob-node │ line 1 ok"
        assert "times" in label(screen)
        await pilot.press("T")
        assert shown(screen)[0].startswith("1.t-new@")
        await pilot.press("slash")
        await pilot.press(*"error", "enter")
        assert screen.query_text == "error"
        assert screen.match == 8  # the last match first (line 9), as the newest matters most
        assert "/error: line 9 of 9" in label(screen) and "held" in label(screen)
        await pilot.press("n")
        assert screen.match == 2
        await pilot.press("n")
        assert screen.match == 5
        await pilot.press("N")
        assert screen.match == 2
        assert isinstance(app.screen, DetailScreen)
        # Held: a new fetch with more lines does not change the pane until follow is back on.
        before = shown(screen)
        collector.detail_fn = lambda s: ServiceDetail(
            tasks=(), logs=(), entries=detail_with_sources(s).entries + (LogEntry(LogLine("line 10 new")),))
        screen.fetch()
        while screen.fetches < 2:
            await pilot.pause(0.02)
        assert shown(screen) == before
        await pilot.press("f")
        assert screen.follow and shown(screen)[-1] == "line 10 new"
        # esc in the search box clears the search; esc on the screen goes back.
        await pilot.press("slash", "x", "escape")
        assert screen.query_text == "" and isinstance(app.screen, DetailScreen)
        await pilot.press("escape")
        assert not isinstance(app.screen, DetailScreen)


async def test_empty_logs_say_no_log_lines():
    collector = FakeCollector(chime(), detail=lambda s: ServiceDetail(tasks=(), logs=()))
    app = DtmonApp(fake_config(), collectors=[collector], clock=frozen_clock)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_inventory(pilot, app)
        assert label(screen) == "logs — no log lines"
        assert shown(screen) == []
