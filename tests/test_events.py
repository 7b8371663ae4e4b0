"""Live events: the stream's bounded reader and debouncing (pure), then a real engine's event stream
(filtering, reconnect after the engine restarts, nothing left after close) and the dashboard with
`refresh = 60` showing a `docker service scale` within 2 s."""

from __future__ import annotations

import asyncio

import json
import os
import threading
import time
from urllib.parse import unquote

import pytest
import yaml

from dtmon.collectors.events import (
    BACKOFF_FIRST,
    BACKOFF_MAX,
    ChunkedDecoder,
    Debouncer,
    EventStream,
    LineReader,
    StreamError,
    concerns,
    events_path,
    next_backoff,
)

# ---------------------------------------------------------------------------
# Pure parts.
# ---------------------------------------------------------------------------


def test_line_reader_splits_across_pieces_and_drops_overlong_lines():
    reader = LineReader(limit=10)
    assert reader.feed(b'{"a":1}\n{"b"') == [b'{"a":1}']
    assert reader.feed(b':2}\n\n') == [b'{"b":2}']
    assert reader.feed(b"x" * 8) == []
    assert reader.feed(b"y" * 8) == []  # over the limit: the whole line goes
    assert reader.feed(b"zzz\nok\n") == [b"ok"]
    assert reader.dropped == 1
    assert reader.feed(b"q" * 100 + b"\nlast\n") == [b"last"] and reader.dropped == 2


def test_chunked_decoder_at_any_boundary_and_bad_framing():
    body = b"7\r\n{\"a\":1}\r\n2\r\n\n{\r\n5;ext=1\r\n\"b\":2\r\n2\r\n}\n\r\n0\r\n\r\n"
    for cut in range(1, len(body)):
        decoder = ChunkedDecoder()
        out = decoder.feed(body[:cut]) + decoder.feed(body[cut:])
        assert out == b'{"a":1}\n{"b":2}\n' and decoder.done, cut
    with pytest.raises(StreamError, match="chunk size"):
        ChunkedDecoder().feed(b"zz\r\n")
    with pytest.raises(StreamError, match="no CRLF"):
        ChunkedDecoder().feed(b"1\r\nabc")
    with pytest.raises(StreamError, match="too long"):
        ChunkedDecoder().feed(b"1" * 100)


def test_debouncer_gathers_a_burst_and_keeps_a_gap():
    debouncer = Debouncer(debounce=0.25, min_gap=1.0)
    assert debouncer.due_at() is None and not debouncer.take(0.0)
    debouncer.event(10.0)
    debouncer.event(10.1)  # same burst
    assert debouncer.due_at() == 10.25 and not debouncer.take(10.2)
    assert debouncer.take(10.25) and debouncer.due_at() is None
    debouncer.event(10.3)  # the next burst waits for the gap after the last hint
    assert debouncer.due_at() == 11.25 and not debouncer.take(11.0) and debouncer.take(11.3)


def test_only_events_about_watched_stacks_count():
    stacks = {"datatrail", "datatrail-client"}
    container = {"Type": "container", "Actor": {"Attributes": {"com.docker.stack.namespace": "datatrail-client"}}}
    assert concerns(container, stacks)
    assert not concerns({**container, "Actor": {"Attributes": {"com.docker.stack.namespace": "other"}}}, stacks)
    service = {"Type": "service", "Actor": {"Attributes": {"name": "datatrail_server"}}}
    assert concerns(service, stacks)
    assert not concerns({"Type": "service", "Actor": {"Attributes": {"name": "datatrailx_server"}}}, stacks)
    for junk in (None, [], "x", {"Type": "service"}, {"Type": "service", "Actor": []},
                 {"Type": "node", "Actor": {"Attributes": {"name": "datatrail_x"}}},
                 {"Type": "service", "Actor": {"Attributes": {"name": 3}}}):
        assert not concerns(junk, stacks)
    assert json.loads(unquote(events_path().split("filters=")[1])) == {"type": ["service", "container"]}


def test_backoff_doubles_up_to_a_cap():
    waits = [next_backoff(None)]
    for _ in range(10):
        waits.append(next_backoff(waits[-1]))
    assert waits[0] == BACKOFF_FIRST and waits[-1] == BACKOFF_MAX and waits == sorted(waits)


def test_a_stream_to_nowhere_retries_quietly_and_closes(tmp_path):
    states: list[tuple[bool, str | None]] = []
    stream = EventStream("x", lambda _t: (f"unix://{tmp_path}/none.sock", None), {"datatrail"}, on_hint=lambda: None,
                         on_state=lambda c, e: states.append((c, e))).start()
    deadline = time.monotonic() + 5
    while not states and time.monotonic() < deadline:
        time.sleep(0.02)
    stream.close()
    assert states[0] == (False, "connection failed: no such socket")
    assert not stream.alive and not stream.connected


# ---------------------------------------------------------------------------
# A real engine.
# ---------------------------------------------------------------------------

engine_tests = pytest.mark.engine


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _event_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("events-")]


def _until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"never: {what}")
        time.sleep(0.02)


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    """One real single-node swarm with a `datatrail` stack (service `a`) and an unwatched `other` stack."""
    from engines import Dockerd, require_engines, service_def

    require_engines()
    tmp = tmp_path_factory.mktemp("events")
    dockerd = Dockerd("events").boot()
    try:
        network = {"hostnet": {"external": True, "name": "host"}}
        for stack in ("datatrail", "other"):
            compose = tmp / f"{stack}.yaml"
            compose.write_text(yaml.safe_dump({"version": "3.8", "services": {"a": service_def()}, "networks": network}))
            dockerd.stack_deploy(compose, stack)
        dockerd.wait_converged({"datatrail_a": (1, 1), "other_a": (1, 1)})
        dockerd.compose = tmp / "datatrail.yaml"
        yield dockerd
    finally:
        dockerd.stop()


@engine_tests
def test_stream_hints_on_watched_changes_only_and_reconnects_after_a_restart(engine):
    hints: list[float] = []
    states: list[tuple[bool, str | None]] = []
    fds, threads = _fds(), set(threading.enumerate())
    stream = EventStream("events", lambda _t: (engine.url, None), {"datatrail"}, on_hint=lambda: hints.append(time.monotonic()),
                         on_state=lambda c, e: states.append((c, e)), debounce=0.1, min_gap=0.2).start()
    try:
        _until(lambda: stream.connected, 20, "stream open")
        engine.docker("service", "scale", "-d", "other_a=2")  # not a watched stack
        engine.wait_converged({"other_a": (2, 2)})
        time.sleep(0.5)
        assert hints == [] and stream.events == 0

        scaled = time.monotonic()
        engine.docker("service", "scale", "-d", "datatrail_a=2")
        _until(lambda: hints, 2, "a hint after the scale")
        assert hints[0] - scaled < 1.0
        engine.wait_converged({"datatrail_a": (2, 2)})
        assert stream.events >= 3  # the service update, then its new container's create and start

        engine.stop(keep=True)  # the engine goes away: the stream says so, and retries
        _until(lambda: states and states[-1][0] is False, 10, "stream closed")
        hinted = len(hints)  # counted before the stream can reopen: its hint comes the moment it opens
        engine.restart()
        _until(lambda: stream.connected and stream.connections == 2, 60, "stream reopened")
        reopened = time.monotonic()
        _until(lambda: len(hints) > hinted, 2, "a hint on reopening (what changed meanwhile)")
        assert hints[hinted] - reopened < 0.5  # given as the stream opened, not after a later event's debounce
        hinted = len(hints)
        engine.docker("service", "scale", "-d", "datatrail_a=1")
        _until(lambda: len(hints) > hinted, 2, "a hint after the restart")
    finally:
        stream.close()
    assert not stream.alive
    assert [s[0] for s in states][:2] == [True, False] and states[-1] == (True, None)
    _until(lambda: _fds() <= fds and set(threading.enumerate()) <= threads, 5, "no fd or thread left")
    engine.wait_converged({"datatrail_a": (1, 1)})


@engine_tests
def test_a_silent_stream_is_reopened_without_a_word(engine):
    states: list[tuple[bool, str | None]] = []
    hints: list[float] = []
    stream = EventStream("events", lambda _t: (engine.url, None), {"datatrail"}, on_hint=lambda: hints.append(1),
                         on_state=lambda c, e: states.append((c, e)), idle_reopen=0.5).start()
    try:
        _until(lambda: stream.connections >= 3, 10, "reopened twice")
        assert states == [(True, None)] and stream.connected  # the chip never blinks
        assert hints  # a poll after each reopening covers what a dead link may have missed
    finally:
        stream.close()
    assert not stream.alive


@engine_tests
async def test_dashboard_with_refresh_60_shows_a_scale_within_2s(engine, tmp_path):
    from engines import write_config

    from dtmon.app import DtmonApp
    from dtmon.config import load
    from dtmon.widgets.header import SiteChips
    from dtmon.widgets.table import ServicesTable

    config = write_config(tmp_path / "c.toml", [("chime", engine.url, {"datatrail": engine.compose})],
                          refresh=60, timeout=5)
    fds = _fds()
    app = DtmonApp(load(config))

    def replicas() -> str | None:
        row = app.query_one(ServicesTable).row_for("chime/datatrail_a")
        return row.cells[1].text if row else None

    async with app.run_test(size=(120, 30)) as pilot:
        async def until(condition, timeout: float, what: str) -> None:
            deadline = time.monotonic() + timeout
            while not condition():
                if time.monotonic() > deadline:
                    raise AssertionError(f"never: {what}")
                await pilot.pause(0.02)

        await until(lambda: "chime" in app.live and app.sites["chime"].polled_at is not None, 15, "live and polled")
        await until(lambda: replicas() == "1/1", 30, "1/1 shown")  # (the engine may still be converging)
        chip = app.query_one(SiteChips).shown["chime"].text
        assert chip.startswith("chime• ✓"), chip  # the chip says the site is event-driven
        polls = app.polls

        scaled = time.monotonic()
        engine.docker("service", "scale", "-d", "datatrail_a=2")
        await until(lambda: (replicas() or "").endswith("/2"), 2.0, "the new desired count within 2 s of the scale")
        took = time.monotonic() - scaled
        # The second replica runs when the engine has started its container (seconds on a loaded machine): the
        # screen follows within 2 s of the engine saying so, with no poll due for a minute.
        await asyncio.to_thread(engine.wait_converged, {"datatrail_a": (2, 2)})
        await until(lambda: replicas() == "2/2", 2.0, "2/2 on screen within 2 s of the engine running both")
        assert app.sites["chime"].services[0].running == 2
        assert app.polls - polls <= 4, "a burst of events is one or two polls, not one per event"
        print(f"scale shown after {took:.2f}s, {app.polls - polls} polls")

        engine.docker("service", "scale", "-d", "datatrail_a=1")  # the container stops after its 1 s grace
        await until(lambda: replicas() == "1/1", 5.0, "1/1 again, long before the next poll")

        # A crash: the container dies; swarm says why on the task, and the dashboard shows it at once.
        container = engine.docker("ps", "-q", "--filter", "label=com.docker.swarm.service.name=datatrail_a").stdout.split()
        assert len(container) == 1
        before = app.sites["chime"].services[0].error_at  # (an earlier test's engine restart left an error)
        crashed = time.monotonic()
        engine.docker("kill", container[0])

        def crash_shown() -> bool:
            service = app.sites["chime"].services[0]
            return service.error_at != before and "non-zero exit (137)" in (service.error or "")

        def engine_has_it() -> bool:
            return any("137" in (t.get("Status", {}).get("Err") or "") for t in engine.tasks("datatrail_a"))

        deadline = time.monotonic() + 30
        while not await asyncio.to_thread(engine_has_it):  # the engine's own record first (slow when loaded)
            assert time.monotonic() < deadline, "the engine never recorded the crash"
            await pilot.pause(0.1)
        await until(crash_shown, 2.0, "the crash within 2 s of the engine recording it")
        print(f"crash shown after {time.monotonic() - crashed:.2f}s: {app.sites['chime'].services[0].error}")
    assert _event_threads() == []
    _until(lambda: _fds() <= fds, 5, "no fd left after the app closed")


def test_events_config_defaults_and_bad_values(tmp_path):
    from dtmon.config import ConfigError, load

    path = tmp_path / "c.toml"
    site = '[sites.chime]\ndocker = "unix:///var/run/docker.sock"\n'
    path.write_text(f"refresh = 5\n{site}")
    events = load(path).events
    assert (events.enabled, events.refresh, events.debounce) == (True, 60.0, 0.25)
    path.write_text(f"{site}[events]\nenabled = false\nrefresh = 120\n")
    assert load(path).events.enabled is False and load(path).events.refresh == 120.0
    for bad in ("refresh = 0", "debounce = -1", 'refresh = "60"', "every = 3"):
        path.write_text(f"{site}[events]\n{bad}\n")
        with pytest.raises(ConfigError, match=r"events\."):
            load(path)


def test_the_live_mark_and_a_quiet_header():
    from datetime import datetime, timedelta, timezone

    from dtmon.format import site_chip
    from dtmon.model import SiteStatus

    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    site = SiteStatus("chime", True, latency_ms=12.0, polled_at=now - timedelta(seconds=30))
    assert site_chip(site, now, late_after=65, live=True).text == "chime• ✓ 12ms"
    assert site_chip(site, now, late_after=10, live=False).text == "chime ✓ 12ms 30s"
    down = SiteStatus("chime", False, polled_at=now - timedelta(seconds=30))
    assert "•" not in site_chip(down, now, 65, live=True).text  # an unreachable site is not event-driven


async def test_chips_repaint_only_when_a_stream_opens_or_breaks():
    from datetime import datetime, timezone

    from textual.app import App

    from dtmon.model import SiteStatus
    from dtmon.widgets.header import SiteChips

    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    sites = [SiteStatus("chime", True, latency_ms=12.0, polled_at=now), SiteStatus("kko", True, latency_ms=9.0, polled_at=now)]

    class Bar(App):
        def compose(self):
            yield SiteChips(["chime", "kko"], late_after=10, live_late_after=65)

    async with Bar().run_test() as pilot:
        chips = pilot.app.query_one(SiteChips)
        assert chips.show(sites, now) == 2
        assert chips.show(sites, now) == 0
        assert chips.show(sites, now, {"chime"}) == 1 and chips.shown["chime"].text == "chime• ✓ 12ms"
        assert chips.show(sites, now, {"chime"}) == 0
        assert chips.show(sites, now) == 1 and chips.shown["chime"].text == "chime ✓ 12ms"


async def test_the_app_polls_on_a_hint_again_after_one_under_way_and_stretches_the_period_while_live():
    import threading

    from tui_fakes import chime, fake_config, frozen_clock, kko, world

    from dtmon.app import DtmonApp, SiteEvents

    collectors = world(chime(), kko())
    app = DtmonApp(fake_config(refresh=5.0), collectors=collectors, clock=frozen_clock)
    fake = collectors[0]
    async with app.run_test() as pilot:
        async def until(condition, what: str) -> None:
            deadline = time.monotonic() + 5
            while not condition():
                assert time.monotonic() < deadline, what
                await pilot.pause(0.02)

        await until(lambda: fake.polls == 1 and "chime" not in app._in_flight, "first poll")
        assert app.streams == {}  # fakes say nothing of an engine: no stream
        assert app.poll_period("chime") == 5.0
        app.post_message(SiteEvents("chime", True))
        await until(lambda: "chime" in app.live, "live")
        assert app.poll_period("chime") == 60.0 and app.poll_period("kko") == 5.0

        app.post_message(SiteEvents("chime", None))  # a hint: polled at once
        await until(lambda: fake.polls == 2, "polled on the hint")

        fake.gate = threading.Event()  # a slow poll, and a hint while it runs
        app.post_message(SiteEvents("chime", None))
        await until(lambda: "chime" in app._in_flight, "poll under way")
        app.post_message(SiteEvents("chime", None))
        await pilot.pause(0.1)
        fake.gate.set()
        await until(lambda: fake.polls == 4, "polled again right after")
        fake.gate = None

        app.post_message(SiteEvents("chime", False, "stream ended"))  # the stream broke: poll now, short period
        await until(lambda: fake.polls == 5, "polled when the stream broke")
        assert "chime" not in app.live and app.poll_period("chime") == 5.0
