"""dtmon against hostile servers (tests/hostile.py): a Docker Engine API on a unix socket and a Buckets +
Prometheus HTTP server answering control sequences, duplicated keys and absurd numbers.

What is checked is what reaches people: the bytes `dtmon status` and the dashboard write to a pseudo-terminal
(no injected sequence among them), the dashboard's state under Pilot (it keeps running; every key unique; bad
data is that source's error), and that the password in the sources' URLs appears nowhere.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from hostile import (  # noqa: E402
    BIDI, ENGINE_MODES, HTTP_MODES, INJECTED, PASSWORD, HostileEngine, HostileHttp, unsafe_in, write_hostile_config,
)
from ptyterm import PtyTerminal, visible  # noqa: E402

DTMON = [sys.executable, "-m", "dtmon"]

#: (engine mode, HTTP mode, what `status` must say about it): every mode of both servers is played.
CASES = [
    ("escapes", "escapes", ["title_^[]0;pwned^G^[[2J", "boom ^[c <9b>2J <U+202E>gnp.exe",
                            "datatrail-title^[]0;pwned^G", "datatrail-bidi<U+202E>gnp.exe",
                            "bad_data: parse ^[c error <9b>2J ^[]0;pwned^G", "job=scrape^[]52;c;cHduZWQ=^G"]),
    ("duplicate-names", "duplicates", ["second one fails", "target job=a instance=b: down",
                                       "replication_pending[range]: a value of 1e+308 is beyond any believable number"]),
    ("tasks-without-id", "huge", ["no id 1", "queued: a number of ~4001 digits is beyond any believable count"]),
    ("stack-clash", "negative", ["a      b_c", "a_b    c        missing",
                                 "queued: a count cannot be negative, got -5",
                                 "site chime: a count of files cannot be negative, got -5"]),
    ("huge-counts", "error-500", ["running tasks: a number of ~4001 digits is beyond any believable count",
                                  "HTTP 500 Internal ^[]0;pwned^G Error"]),
    ("negative-counts", "healthy", ["running tasks: a count cannot be negative, got -5"]),
    ("garbage", "healthy", ["dt     svc", "all healthy"]),  # what is readable of it is read
    ("api-error", "healthy", ["UNREACHABLE (engine said: rpc error: ^[]0;pwned^G^[c ***)"]),
    ("healthy", "bucket-error", ["the service answered an error: no such bucket ^[c^[]52;c;cHduZWQ=^G"]),
]


def test_every_mode_is_played() -> None:
    assert {c[0] for c in CASES} == set(ENGINE_MODES)
    assert {c[1] for c in CASES} == set(HTTP_MODES)


def no_injection(data: bytes) -> None:
    """Fail when any sequence the hostile servers sent is in `data` (bytes written to a terminal)."""
    found = [seq for seq in INJECTED if seq in data]
    assert not found, f"injected {found} reached the terminal: {visible(data)[-2000:]}"


@pytest.mark.parametrize("engine_mode, http_mode, expected", CASES, ids=[f"{c[0]}+{c[1]}" for c in CASES])
def test_status_writes_no_control_sequence_and_no_password(tmp_path, engine_mode, http_mode, expected) -> None:
    with HostileEngine(tmp_path / "engine.sock", engine_mode) as engine, HostileHttp(http_mode) as http:
        config = write_hostile_config(tmp_path, engine, http)
        with PtyTerminal([*DTMON, "--config", str(config), "status"], lines=40, columns=200) as term:
            code, data = term.wait(30)
        as_json = subprocess.run([*DTMON, "--config", str(config), "status", "--json"], capture_output=True,
                                 text=True, timeout=30)
    text = data.decode("utf-8").replace("\r\n", "\n")  # the terminal's line discipline adds the \r
    healthy = engine_mode == "garbage"
    assert code == (0 if healthy else 1), text  # problems found (or none), not a crash (see below)
    assert "Traceback" not in text
    assert b"\x1b" not in data and not unsafe_in(text), text  # `status` writes no escape sequence at all
    no_injection(data)
    assert PASSWORD not in text and "alice:***@127.0.0.1" in text
    for snippet in expected:
        assert snippet in text, text
    # --json keeps its escaping (and is JSON: no NaN, no Infinity); what it carries is the same clean text.
    assert as_json.returncode == code and "Traceback" not in as_json.stderr
    assert as_json.stdout.isascii() and PASSWORD not in as_json.stdout
    document = json.loads(as_json.stdout, parse_constant=lambda c: pytest.fail(f"not JSON: {c}"))
    assert not unsafe_in(json.dumps(document, ensure_ascii=False))
    assert document["buckets_source"]["url"].startswith("http://alice:***@127.0.0.1:")
    assert document["prometheus"]["url"].startswith("http://alice:***@127.0.0.1:")


# ---------------------------------------------------------------------------
# The dashboard under Pilot: it survives every mode, one after the other, in one session.
# ---------------------------------------------------------------------------

WIDE = (200, 50)
ALL_STACKS = {"dt": ["svc"], "a": ["b_c"], "a_b": ["c"]}


def cell_texts(table) -> list[str]:
    return [str(cell) for row in range(table.row_count) for cell in table.get_row_at(row)]


async def until(pilot, condition, timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what or condition}"
        await pilot.pause(0.05)


async def test_the_dashboard_survives_every_hostile_mode(tmp_path) -> None:
    from dtmon.app import DtmonApp
    from dtmon.config import load
    from dtmon.widgets.buckets import BucketsPane
    from dtmon.widgets.progress import ProgressPane

    with HostileEngine(tmp_path / "engine.sock", "healthy") as engine, HostileHttp("healthy") as http:
        config = load(write_hostile_config(tmp_path, engine, http, stacks=ALL_STACKS, refresh=0.2))
        app = DtmonApp(config)
        async with app.run_test(size=WIDE) as pilot:
            buckets, progress = app.query_one(BucketsPane), app.query_one(ProgressPane)
            tables = [app.query_one("#services"), buckets.table, app.query_one("#progress-table"),
                      app.query_one("#feeds-table")]

            async def play(engine_mode: str, http_mode: str) -> None:
                engine.mode, http.mode = engine_mode, http_mode
                polls = (app.polls, buckets.polls, progress.polls)
                await until(pilot, lambda: app.polls >= polls[0] + 2 and buckets.polls >= polls[1] + 2
                            and progress.polls >= polls[2] + 2, what=f"two polls of {engine_mode}/{http_mode}")
                assert app.is_running
                for table in tables:
                    keys = [table.coordinate_to_cell_key((i, 0))[0].value for i in range(table.row_count)]
                    assert len(keys) == len(set(keys))
                    texts = cell_texts(table)
                    assert not [t for t in texts if unsafe_in(t) or PASSWORD in t], texts
                status = app.query_one("#status").text + str(app.query_one("#chips").render())
                for summary in ("#buckets-summary", "#progress-summary"):
                    status += str(app.query_one(summary).render())
                assert not unsafe_in(status) and PASSWORD not in status
                assert "alice:***@127.0.0.1" in status

            for engine_mode, http_mode, _ in CASES:
                await play(engine_mode, http_mode)
                site = app.sites["hostile"]
                if engine_mode in ("huge-counts", "negative-counts"):  # the site's error, its last data kept
                    assert not site.reachable and "running tasks:" in site.error
                elif engine_mode == "duplicate-names":
                    same = [s.key for s in site.services if s.name == "dt_same"]
                    assert len(same) == 2 and len(set(same)) == 2
                elif engine_mode == "stack-clash":
                    clash = [s.key for s in site.services if s.name == "a_b_c"]
                    assert len(clash) == 2 and len(set(clash)) == 2
                elif engine_mode == "escapes":
                    names = [s.name for s in site.services]
                    assert "dt_title_^[]0;pwned^G^[[2J" in names
                    # Markup in a name is shown as written: no link, no style.
                    assert any("[link=file:///etc/passwd]x[/link]" in t for t in cell_texts(tables[0]))
                if http_mode in ("huge", "negative", "error-500"):
                    assert not buckets.report.reachable and PASSWORD not in buckets.report.error
                if http_mode == "duplicates":  # the same series twice and labels that display alike: 5 rows
                    assert sum(1 for f in progress.report.feeds if f.name == "targets_up") == 5
                    assert any("1e+308" in e for e in progress.report.query_errors)
            await play("healthy", "healthy")  # and it recovers
            assert app.sites["hostile"].reachable and buckets.report.reachable and progress.report.reachable


async def test_detail_logs_keep_colours_and_drop_every_other_sequence(tmp_path) -> None:
    from rich.text import Text

    from dtmon.app import DtmonApp
    from dtmon.config import load
    from dtmon.screens.detail import DetailScreen

    with HostileEngine(tmp_path / "engine.sock", "escapes") as engine:
        app = DtmonApp(load(write_hostile_config(tmp_path, engine)))
        async with app.run_test(size=WIDE) as pilot:
            await until(pilot, lambda: app.polls >= 1 and app.sites["hostile"].reachable)
            table = app.query_one("#services")
            keys = [table.coordinate_to_cell_key((i, 0))[0].value for i in range(table.row_count)]
            target = next(k for k in keys if "link_" in k)
            table.move_cursor(row=keys.index(target))
            await pilot.press("enter")
            screen = app.screen
            assert isinstance(screen, DetailScreen)
            await until(pilot, lambda: screen.fetches >= 1 and screen.detail is not None)
            first = screen.detail.logs[0]
            assert first.text.startswith("red plain ")
            assert "\x1b" not in first.text and "<U+202E>gnp.exe" in first.text and "click" in first.text
            log = screen.query_one("#logs")
            strips = log.lines
            assert len(strips) == 2
            segments = list(strips[0])
            red = [s for s in segments if s.text == "red"]
            assert red and red[0].style is not None and red[0].style.color is not None
            assert red[0].style.color.name in ("red", "color(1)")
            shown = "".join(s.text for s in segments)
            assert not unsafe_in(shown) and "\x1b" not in shown
            tasks = cell_texts(screen.query_one("#tasks"))
            assert any("boom ^[c <9b>2J <U+202E>gnp.exe" in t for t in tasks), tasks
            assert isinstance(Text.from_ansi(first.ansi()), Text)


# ---------------------------------------------------------------------------
# The bytes the dashboard writes to its terminal.
# ---------------------------------------------------------------------------


def test_the_dashboard_writes_no_injected_sequence_to_its_terminal(tmp_path) -> None:
    with HostileEngine(tmp_path / "engine.sock", "escapes") as engine, HostileHttp("escapes") as http:
        config = write_hostile_config(tmp_path, engine, http, refresh=1.0)
        with PtyTerminal([*DTMON, "--config", str(config)], lines=40, columns=160) as term:
            data = term.read_for(6)
            assert "title_^[]0;pwned^G^[[2J" in visible(data), visible(data)[-3000:]
            os.write(term.fd, b"\x1b[B\x1b[B\r")  # down to the first service (the failing one), open its detail
            detail = term.read_for(4)
            assert "<U+202E>gnp.exe" in visible(detail) and "second line" in visible(detail)
            os.write(term.fd, b"\x1b2")  # escape back, then the buckets view
            data += detail + term.read_for(3)
    no_injection(data)
    assert b"\x1b[2J" not in data  # Textual never erases the whole screen: only the data tried to
    assert PASSWORD.encode() not in data


# ---------------------------------------------------------------------------
# If the app ever dies: exit 1, no local variables, no secret.
# ---------------------------------------------------------------------------

CRASH = """
import sys
from dtmon import cli
from dtmon.app import DtmonApp

def on_mount(self):
    secret_local = "the url is " + self.config.buckets.url
    raise RuntimeError("crashed near " + self.config.buckets.url + " \\x1b]0;pwned\\x07")

DtmonApp.on_mount = on_mount
sys.exit(cli.main(["--config", sys.argv[1]]))
"""


def test_a_crash_exits_1_without_locals_or_secrets(tmp_path) -> None:
    with HostileEngine(tmp_path / "engine.sock", "healthy") as engine, HostileHttp("healthy") as http:
        config = write_hostile_config(tmp_path, engine, http)
        with PtyTerminal([sys.executable, "-c", CRASH, str(config)], lines=40, columns=160) as term:
            code, data = term.wait(30)
    text = visible(data)
    assert code == 1, text
    assert "RuntimeError: crashed near http://alice:***@127.0.0.1:" in text
    assert "internal error" in text
    assert PASSWORD not in text and "secret_local" not in text and "locals" not in text
    no_injection(data)


# ---------------------------------------------------------------------------
# Secrets in what the commands print.
# ---------------------------------------------------------------------------


def test_config_check_shows_no_password_and_the_webhook_as_its_host(tmp_path) -> None:
    webhook = "https://hooks.example.org/services/T000/B000/XOXOTOKEN"
    with HostileEngine(tmp_path / "engine.sock", "healthy") as engine, HostileHttp("healthy") as http:
        config = write_hostile_config(tmp_path, engine, http, announce=webhook)
        out = subprocess.run([*DTMON, "--config", str(config), "config", "check"], capture_output=True, text=True,
                             timeout=30)
    assert out.returncode == 0, out.stderr
    assert PASSWORD not in out.stdout and "XOXOTOKEN" not in out.stdout
    assert "http://alice:***@127.0.0.1:" in out.stdout and "announce: https://hooks.example.org/…" in out.stdout


def test_the_webhook_token_is_used_but_never_shown_nor_audited(tmp_path) -> None:
    """The plan (CLI and confirm dialog) and the audit log name the webhook by scheme and host; the POST goes to
    the full URL."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from dataclasses import replace

    from dtmon.actions.execute import run_plan
    from dtmon.actions.plan import ANNOUNCE, Plan, plan_redeploy
    from test_plan import clean_repos, make_config, make_snapshot

    received: list[str] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            received.append(self.path)
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        webhook = f"http://127.0.0.1:{server.server_port}/services/T0/B0/XOXOTOKEN"
        config = make_config(announce=webhook)
        config = replace(config, deploy=replace(config.deploy, audit=tmp_path / "audit.jsonl",
                                                lock=tmp_path / "actions.lock"))
        plan = plan_redeploy(config, make_snapshot(), "chime", "datatrail", clean_repos(), who="alice@ops")
        assert plan.ok, plan.refusal
        assert "XOXOTOKEN" not in plan.text() and f"POST http://127.0.0.1:{server.server_port}/…" in plan.text()
        (announce,) = [s for s in plan.steps if s.kind == ANNOUNCE]
        assert announce.url == webhook  # kept whole where it is used
        result = run_plan(config, Plan(plan.action, plan.site, plan.target, steps=(announce,)), wait_timeout=5)
        assert result.outcome == "done"
        assert received == ["/services/T0/B0/XOXOTOKEN"]
        audit = (tmp_path / "audit.jsonl").read_text()
        assert "XOXOTOKEN" not in audit
        records = [json.loads(line) for line in audit.splitlines()]
        assert records[0]["plan"][0].startswith(f"POST http://127.0.0.1:{server.server_port}/…")
    finally:
        server.shutdown()
        server.server_close()


def test_an_error_quoting_a_url_with_a_password_shows_none_of_it() -> None:
    from dtmon.collectors.buckets import BucketsCollector
    from dtmon.config import BucketsConfig

    url = f"http://alice:{PASSWORD}@127.0.0.1:9"  # nothing listens on port 9: refused
    collector = BucketsCollector(BucketsConfig(url=url), timeout=2.0)
    report = collector.poll_blocking()
    assert not report.reachable
    assert PASSWORD not in report.error and PASSWORD not in report.url
    assert report.url == "http://alice:***@127.0.0.1:9"
    assert BIDI not in report.error


async def test_a_command_naming_a_server_given_name_is_never_markup(tmp_path) -> None:
    """The progress screen's steps table shows each command as it is: a service called `[link=…]x[/link]`
    makes no hyperlink and no style (a plain str cell in a DataTable is read as markup)."""
    from rich.text import Text

    from dtmon.actions.plan import ANNOUNCE, Plan, Step
    from dtmon.screens.actions import Progress
    from test_actions_tui import make_app, make_config, wait_finished

    from hostile import MARKUP

    command = f"POST http://127.0.0.1:9/… # {MARKUP}"
    step = Step(ANNOUNCE, "announce", command, "kko", "datatrail-client", payload="{}", url="http://127.0.0.1:9/x")
    config = make_config(tmp_path, allow=True)
    app = make_app(config)
    async with app.run_test(size=(160, 30)) as pilot:
        screen = Progress(config, Plan("redeploy", "kko", "datatrail-client", steps=(step,)))
        app.push_screen(screen)
        await wait_finished(screen, pilot)
        cell = screen.query_one("#steps").get_cell("0", "step")
        assert isinstance(cell, Text) and cell.plain == command and not cell.spans


def test_a_restart_by_a_name_two_services_share_is_refused() -> None:
    from dataclasses import replace

    from dtmon.actions.plan import plan_restart
    from dtmon.model import StackStatus
    from test_plan import make_config, make_snapshot, service

    snap = make_snapshot()
    kko = snap.site("kko")
    twin = replace(service("kko", "datatrail-client", "worker", sid="other"), key_suffix="#other")
    stacks = tuple(StackStatus(s.name, s.services + ((twin,) if s.name == "datatrail-client" else ()))
                   for s in kko.stacks)
    snap = replace(snap, sites=tuple(replace(s, stacks=stacks) if s.name == "kko" else s for s in snap.sites))
    plan = plan_restart(make_config(), snap, "kko", "datatrail-client_worker")
    assert not plan.ok and "2 services at kko are named datatrail-client_worker" in plan.refusal
    assert plan_restart(make_config(), make_snapshot(), "kko", "datatrail-client_worker").ok


STATUS_CRASH = """
import sys
from dtmon import cli
from dtmon.collectors import poll

def snapshot(config):
    token = config.buckets.url
    raise RuntimeError("status broke at " + token + " \\x1b]0;pwned\\x07\\x1bc")

poll.snapshot = snapshot
sys.exit(cli.main(["--config", sys.argv[1], "status"]))
"""


def test_a_crash_of_status_prints_no_secret_and_no_control_sequence(tmp_path) -> None:
    with HostileEngine(tmp_path / "engine.sock", "healthy") as engine, HostileHttp("healthy") as http:
        config = write_hostile_config(tmp_path, engine, http)
        out = subprocess.run([sys.executable, "-c", STATUS_CRASH, str(config)], capture_output=True, timeout=30)
    err = out.stderr.decode()
    assert out.returncode == 1, err
    assert "RuntimeError: status broke at http://alice:***@127.0.0.1:" in err and "internal error" in err
    assert PASSWORD not in err and b"\x1b" not in out.stderr


async def test_a_detail_that_cannot_be_shown_is_the_screen_s_error(tmp_path) -> None:
    from dataclasses import replace

    from dtmon.app import DtmonApp
    from dtmon.collectors.swarm import ServiceDetail
    from dtmon.config import load
    from dtmon.model import TaskInfo
    from dtmon.screens.detail import DetailScreen

    with HostileEngine(tmp_path / "engine.sock", "healthy") as engine:
        app = DtmonApp(load(write_hostile_config(tmp_path, engine)))
        async with app.run_test(size=WIDE) as pilot:
            await until(pilot, lambda: app.sites["hostile"].reachable)
            collector = app.collectors["hostile"]
            good = collector.detail
            # A task whose `since` is no datetime: drawing its age raises.
            bad = TaskInfo("t", 1, "n", "running", "running", "yesterday", None, "")  # type: ignore[arg-type]
            collector.detail = lambda service, **kw: replace(good(service), tasks=(bad,))
            service = next(s for s in app.sites["hostile"].services if s.id)
            screen = DetailScreen(service, collector, 0.2, app.clock)
            app.push_screen(screen)
            await until(pilot, lambda: screen.fetches >= 2)
            assert app.is_running and screen.error and "cannot show the answer" in screen.error
            collector.detail = good
            await until(pilot, lambda: screen.error is None and screen.detail.tasks and screen.detail.tasks[0].id == "t1")
            assert isinstance(screen.detail, ServiceDetail)
