"""The Buckets service as it really runs: behind a token check (x-access-token, from WORKFLOW_HTTP_TOKEN & co),
with several base URLs tried in order, or the URLs of the operator's workflow workspace. The Buckets-compatible
server requires the token; the official `workflow-core` client is the peer that shows what "right" is."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from buckets_peers import workflow  # noqa: F401 - fixture

from dtmon.collectors import buckets as buckets_module
from dtmon.collectors.buckets import BucketsCollector, unauthorized_text
from dtmon.config import BucketsConfig, ConfigError, load
from dtmon.demo.buckets_server import BucketsServer
from dtmon.workflow_env import TOKEN_VARS, Token, find_token, workspace_buckets

TOKEN = "ghp_s3cr3t-Tok3n-0f-th3-0p3rat0r"
KKO = "datatrail-replicator-kko-minoc"


@pytest.fixture
def no_token(monkeypatch):
    """This process's environment without any of the token variables (in any letter case)."""
    for key in list(os.environ):
        if key.upper() in TOKEN_VARS or key.upper() == "DTMON_TEST_TOKEN":
            monkeypatch.delenv(key)


@pytest.fixture
def guarded(no_token):
    """A Buckets-compatible server that requires TOKEN, with 4 works queued in KKO."""
    server = BucketsServer(token=TOKEN).start()
    server.store.add(KKO, 4)
    try:
        yield server
    finally:
        server.stop()


def closed_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def run_dtmon(*args: str, env: dict[str, str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k.upper() not in TOKEN_VARS} | {"NO_PROXY": "*"} | env
    return subprocess.run([sys.executable, "-m", "dtmon", *args], capture_output=True, text=True,
                          timeout=timeout, env=environ)


# ---------------------------------------------------------------------------
# Pure: where the token comes from, what the workspace says.
# ---------------------------------------------------------------------------


def test_token_precedence_is_the_official_clients():
    # Measured with workflow-core 1.12.3 (see dtmon/workflow_env.py): first *set* variable wins.
    assert find_token(None, {"WORKFLOW_TOKEN": "b", "GITHUB_TOKEN": "c"})[0] == Token("WORKFLOW_TOKEN", "b")
    assert find_token(None, {"GITHUB_PAT": "d", "GITHUB_TOKEN": "c"})[0] == Token("GITHUB_TOKEN", "c")
    assert find_token(None, {"WORKFLOW_HTTP_TOKEN": "a", "WORKFLOW_TOKEN": "b"})[0] == Token("WORKFLOW_HTTP_TOKEN", "a")
    assert find_token(None, {"GITHUB_PAT": "d"})[0] == Token("GITHUB_PAT", "d")
    assert find_token(None, {"workflow_http_token": "lower"})[0] == Token("workflow_http_token", "lower")
    token, note = find_token(None, {"WORKFLOW_HTTP_TOKEN": "", "GITHUB_TOKEN": "c"})
    assert token is None and note == "WORKFLOW_HTTP_TOKEN is set but empty: no token is sent"
    token, note = find_token(None, {})
    assert token is None and note.startswith("no token (none of WORKFLOW_HTTP_TOKEN, WORKFLOW_TOKEN")
    # [buckets] token_env is looked at first; unset, the usual ones follow.
    assert find_token("MY_TOK", {"MY_TOK": "m", "WORKFLOW_HTTP_TOKEN": "a"})[0] == Token("MY_TOK", "m")
    assert find_token("MY_TOK", {"GITHUB_TOKEN": "c"})[0] == Token("GITHUB_TOKEN", "c")


def test_a_token_never_shows_in_its_repr_or_notes():
    token, note = find_token(None, {"GITHUB_TOKEN": TOKEN})
    assert TOKEN not in repr(token) and TOKEN not in str(token) and TOKEN not in note
    assert TOKEN not in unauthorized_text(403, token, None, note)
    assert unauthorized_text(401, None, None, "no token") == "unauthorized: set WORKFLOW_HTTP_TOKEN (HTTP 401)"
    assert unauthorized_text(401, None, "MY_TOK", "no token") == "unauthorized: set MY_TOK or WORKFLOW_HTTP_TOKEN (HTTP 401)"


def test_workspace_buckets_urls(tmp_path):
    path = tmp_path / "workspace.yml"
    assert workspace_buckets(path) == ()
    path.write_text("http:\n  baseurls:\n    buckets:\n      - http://frb-vsop.chime:8004/\n"
                    "      - https://frb.chimenet.ca/workflow/buckets\n")
    assert workspace_buckets(path) == ("http://frb-vsop.chime:8004", "https://frb.chimenet.ca/workflow/buckets")
    path.write_text("http:\n  baseurls:\n    buckets: http://one:8004\n")
    assert workspace_buckets(path) == ("http://one:8004",)
    path.write_text("workspace: x\n")
    assert workspace_buckets(path) == ()
    path.write_text("http:\n  baseurls:\n    buckets: [ftp://x]\n")
    with pytest.raises(ValueError, match=r"workspace.yml: http.baseurls.buckets: expected a URL \(http://host or https://host\), got 'ftp://x'"):
        workspace_buckets(path)
    path.write_text("http: [")
    with pytest.raises(ValueError, match="workspace.yml: not valid YAML"):
        workspace_buckets(path)


def test_config_url_list_and_token_env(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[buckets]\nurl = ["http://a:8004/", "https://b/workflow/buckets"]\ntoken_env = "MY_TOK"\n')
    buckets = load(path).buckets
    assert buckets.urls == ("http://a:8004", "https://b/workflow/buckets") and buckets.token_env == "MY_TOK"
    for bad, message in (('url = []', "buckets.url: expected a URL or a non-empty list"),
                         ('url = ["http://a", "a:8004"]', r"buckets.url: expected a URL \(http://host or https://host\), got 'a:8004'"),
                         ('url = "http://a"\ntoken_env = "MY TOK"', "buckets.token_env: expected the name of an")):
        path.write_text(f"[buckets]\n{bad}\n")
        with pytest.raises(ConfigError, match=message):
            load(path)


def test_without_a_buckets_table_the_workspace_urls_are_offered(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    path = tmp_path / "c.toml"
    path.write_text('refresh = 5\n[sites.kko]\ndocker = "unix:///x.sock"\n')  # a config must watch something
    assert load(path).buckets is None  # no workspace file: no Buckets source
    out = run_dtmon("config", "check", "--config", str(path), env={"HOME": str(tmp_path)})
    assert "buckets: not configured (no [buckets] table, and no Buckets URLs in" in out.stdout, out.stdout + out.stderr
    workspace = tmp_path / ".config" / "workflow" / "workspace.yml"
    workspace.parent.mkdir(parents=True)
    workspace.write_text("http:\n  baseurls:\n    buckets:\n      - http://one:8004\n      - http://two:8004\n")
    buckets = load(path).buckets
    assert buckets.urls == ("http://one:8004", "http://two:8004") and buckets.workspace == workspace
    path.write_text('[buckets]\nurl = "http://mine:8004"\n')
    assert load(path).buckets.urls == ("http://mine:8004",)  # the table wins
    workspace.write_text("http: [")
    path.write_text('refresh = 5\n[sites.kko]\ndocker = "unix:///x.sock"\n')  # a config must watch something
    assert load(path).buckets is None  # a broken workspace is not dtmon's config: ignored, and said by `config check`
    out = run_dtmon("config", "check", "--config", str(path), env={"HOME": str(tmp_path)})
    assert out.returncode == 0
    assert f"buckets: not configured; the workflow workspace was not used: {workspace}: not valid YAML" in out.stdout


# ---------------------------------------------------------------------------
# Against the server that requires the token, beside the official client.
# ---------------------------------------------------------------------------


def test_the_official_client_sends_the_token_and_the_server_requires_it(guarded, workflow):
    url = guarded.url
    assert workflow(url, "which", env={"WORKFLOW_HTTP_TOKEN": TOKEN}) == {"baseurl": url, "token_sent": True}
    assert len(workflow(url, "deposit", KKO, "2", "--site", "kko", env={"GITHUB_PAT": TOKEN})["deposited"]) == 2
    assert workflow(url, "status", KKO, env={"WORKFLOW_TOKEN": TOKEN})["queued"] == 6
    refused = guarded.refused
    with pytest.raises(AssertionError, match="401"):
        workflow(url, "pipelines", env={})
    with pytest.raises(AssertionError, match="403"):
        workflow(url, "pipelines", env={"WORKFLOW_HTTP_TOKEN": "not-the-token"})
    assert guarded.refused == refused + 2


async def test_dtmon_reads_with_the_token_and_says_unauthorized_without(guarded, workflow, monkeypatch):
    url = guarded.url
    report = await BucketsCollector(BucketsConfig(url), 5.0).poll()
    assert not report.reachable
    assert report.error == f"{url}/status/pipelines: unauthorized: set WORKFLOW_HTTP_TOKEN (HTTP 401)"

    monkeypatch.setenv("GITHUB_TOKEN", "wrong")
    report = await BucketsCollector(BucketsConfig(url), 5.0).poll()
    assert report.error == f"{url}/status/pipelines: unauthorized: the token in $GITHUB_TOKEN was refused (HTTP 403)"

    monkeypatch.setenv("WORKFLOW_HTTP_TOKEN", TOKEN)  # before GITHUB_TOKEN, as in the official client
    report = await BucketsCollector(BucketsConfig(url), 5.0).poll()
    assert report.reachable and report.error is None
    official = workflow(url, "status", KKO, env={"WORKFLOW_HTTP_TOKEN": TOKEN})
    kko = next(b for b in report.buckets if b.name == KKO)
    assert {k: getattr(kko, k) for k in official} == official

    monkeypatch.delenv("WORKFLOW_HTTP_TOKEN")
    monkeypatch.delenv("GITHUB_TOKEN")
    monkeypatch.setenv("DTMON_TEST_TOKEN", TOKEN)  # [buckets] token_env names another variable
    report = await BucketsCollector(BucketsConfig(url, token_env="DTMON_TEST_TOKEN"), 5.0).poll()
    assert report.reachable


async def test_base_urls_fail_over_in_order_as_the_official_client_does(guarded, workflow, monkeypatch):
    monkeypatch.setenv("WORKFLOW_HTTP_TOKEN", TOKEN)
    dead = closed_url()
    assert workflow(f"{dead},{guarded.url}", "which", env={"WORKFLOW_HTTP_TOKEN": TOKEN})["baseurl"] == guarded.url
    collector = BucketsCollector(BucketsConfig(dead, fallbacks=(guarded.url,)), 5.0)
    report = await collector.poll()
    assert report.reachable and report.url == guarded.url
    assert [b.name for b in report.buckets] == [KKO]

    with BucketsServer(token=TOKEN) as first:  # the first URL answers: it is preferred
        first.store.add(KKO, 9)
        collector = BucketsCollector(BucketsConfig(first.url, fallbacks=(guarded.url,)), 5.0)
        report = await collector.poll()
        assert report.url == first.url and report.buckets[0].queued == 9
        assert workflow(f"{first.url},{guarded.url}", "which", env={"WORKFLOW_HTTP_TOKEN": TOKEN})["baseurl"] == first.url
        first.fault = "500"  # it fails: the next poll says so, the one after moves on to the second URL
        failed = await collector.poll()
        assert not failed.reachable and failed.error.startswith(f"{first.url}/status/pipelines: HTTP 500")
        report = await collector.poll()
        assert report.reachable and report.url == guarded.url and report.buckets[0].queued == 4
        first.fault = None  # it is back: a later look at the first URL returns to it
        monkeypatch.setattr(buckets_module, "RECHECK_FIRST", 0.0)
        report = await collector.poll()
        assert report.url == first.url and report.buckets[0].queued == 9

    report = await BucketsCollector(BucketsConfig(dead, fallbacks=(closed_url(),)), 2.0).poll()
    assert not report.reachable
    assert report.error.startswith(f"no Buckets URL answers HEAD /version: {dead}: cannot connect")


def test_status_and_config_check_use_the_token_and_never_show_it(guarded, tmp_path):
    config = tmp_path / "c.toml"
    config.write_text(f'timeout = 3\n[buckets]\nurl = ["{closed_url()}", "{guarded.url}"]\n')
    out = run_dtmon("status", "--json", "--config", str(config), env={"WORKFLOW_HTTP_TOKEN": TOKEN})
    data = json.loads(out.stdout)
    assert data["buckets_source"]["reachable"] is True and data["buckets_source"]["url"] == guarded.url
    assert TOKEN not in out.stdout + out.stderr

    out = run_dtmon("status", "--json", "--config", str(config), env={})
    data = json.loads(out.stdout)
    assert out.returncode == 1 and data["buckets_source"]["reachable"] is False
    assert "unauthorized: set WORKFLOW_HTTP_TOKEN" in data["buckets_source"]["error"]
    out = run_dtmon("status", "--config", str(config), env={"WORKFLOW_TOKEN": "wrong-" + TOKEN})
    assert "unauthorized: the token in $WORKFLOW_TOKEN was refused (HTTP 403)" in out.stdout
    assert TOKEN not in out.stdout + out.stderr

    out = run_dtmon("config", "check", "--config", str(config), env={"GITHUB_TOKEN": TOKEN})
    assert "  token: token from $GITHUB_TOKEN" in out.stdout.splitlines()
    assert TOKEN not in out.stdout + out.stderr


def test_status_uses_the_workspace_urls_without_a_buckets_table(guarded, tmp_path):
    workspace = tmp_path / ".config" / "workflow" / "workspace.yml"
    workspace.parent.mkdir(parents=True)
    workspace.write_text(f"http:\n  baseurls:\n    buckets:\n      - {closed_url()}\n      - {guarded.url}\n")
    config = tmp_path / "c.toml"
    config.write_text("timeout = 3\n")
    env = {"HOME": str(tmp_path), "WORKFLOW_HTTP_TOKEN": TOKEN}
    data = json.loads(run_dtmon("status", "--json", "--config", str(config), env=env).stdout)
    assert data["buckets_source"]["url"] == guarded.url and data["buckets_source"]["reachable"] is True
    assert [b["name"] for b in data["buckets"]] == [KKO]
    check = run_dtmon("config", "check", "--config", str(config), env=env).stdout
    assert f"  (offered by the workflow workspace {workspace}; a [buckets] table takes its place)" in check


async def test_the_dashboard_polls_the_workspace_urls_and_keeps_the_token_off_screen(guarded, tmp_path, monkeypatch):
    from dtmon.app import DtmonApp
    from dtmon.widgets.buckets import BucketsPane

    workspace = tmp_path / ".config" / "workflow" / "workspace.yml"
    workspace.parent.mkdir(parents=True)
    workspace.write_text(f"http:\n  baseurls:\n    buckets: {guarded.url}\n")
    monkeypatch.setenv("HOME", str(tmp_path))
    config = tmp_path / "c.toml"
    config.write_text("refresh = 3600\ntimeout = 3\n")
    monkeypatch.setenv("WORKFLOW_HTTP_TOKEN", "wrong-" + TOKEN)
    app = DtmonApp(load(config))
    async with app.run_test(size=(160, 48)) as pilot:
        pane = app.query_one(BucketsPane)
        while pane.polls < 1:
            await pilot.pause(0.05)
        await pilot.pause()
        summary = str(app.query_one("#buckets-summary").render())
        assert "unauthorized: the token in $WORKFLOW_HTTP_TOKEN was refused (HTTP 403)" in summary
        screen = app.export_screenshot()
        assert TOKEN not in screen and "wrong-" not in screen


async def test_a_server_that_echoes_the_token_does_not_get_it_shown(monkeypatch, no_token):
    import httpx

    from dtmon.redact import config_secrets
    from dtmon.config import Config

    monkeypatch.setenv("WORKFLOW_HTTP_TOKEN", TOKEN)
    seen = []

    def echo(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("x-access-token"))
        return httpx.Response(200, text=f"{request.headers['x-access-token']} is not welcome here")

    report = await BucketsCollector(BucketsConfig("http://buckets.test"), 2.0, transport=httpx.MockTransport(echo)).poll()
    assert seen == [TOKEN]  # sent...
    assert "malformed answer: not JSON" in report.error and TOKEN not in report.error  # ...never shown
    assert TOKEN in config_secrets(Config(path=None, buckets=BucketsConfig("http://buckets.test")))
