"""Config edges that once gave a traceback: each is one line naming the file, the key and what was wrong, exit 2.

The table runs `dtmon config check` in-process (an exception escaping would fail the test); the edges that hang
or exhaust memory when mishandled (a FIFO, /dev/zero, /dev/full as the audit log) run in a subprocess with a
timeout. A hypothesis property throws random values at every key: the loader answers Config or ConfigError.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dtmon import cli, config_values
from dtmon.config import MAX_REPLICAS, Config, ConfigError, load, parse_compose
from dtmon.model import SiteStatus, Snapshot
from dtmon.report import render_json

SITE = '[sites.kko]\ndocker = "unix:///run/kko.sock"\n'
COMPOSE = "services:\n  replicator:\n    image: x\n"
LONG = "x" * 256


def _nested_compose(tree: Path) -> str:
    deep = tree / "deep.yaml"
    deep.write_text("services:\n  a:\n    x: " + "[" * 3000 + "]" * 3000 + "\n")
    return SITE + f'[sites.kko.stacks]\ndatatrail-client = "{deep}"\n'


EDGES = {
    # name: (config text, or a function of the folder giving it; the key named; what the line says)
    "empty stack path": (SITE + '[sites.kko.stacks]\ndatatrail-client = ""\n',
                         "sites.kko.stacks.datatrail-client", "expected a path, got an empty string"),
    "empty audit path": (SITE + '[deploy]\naudit = ""\n', "deploy.audit", "expected a path, got an empty string"),
    "unknown ~user": (SITE + '[sites.kko.stacks]\ndatatrail-client = "~nosuchuser/c.yaml"\n',
                      "sites.kko.stacks.datatrail-client", "~nosuchuser: no such user"),
    "component over 255 bytes": (SITE + f'[sites.kko.stacks]\ndatatrail-client = "/tmp/{LONG}/c.yaml"\n',
                                 "sites.kko.stacks.datatrail-client", "a path component longer than 255 bytes (256)"),
    "component over 255 bytes in the audit path": (SITE + f'[deploy]\naudit = "{LONG}.jsonl"\n', "deploy.audit",
                                                   "a path component longer than 255 bytes"),
    "NUL in a path": (SITE + '[sites.kko.stacks]\ndatatrail-client = "c\\u0000.yaml"\n',
                      "sites.kko.stacks.datatrail-client", "a path cannot contain a NUL character"),
    "NUL in a TLS path": (SITE.replace("unix:///run/kko.sock", "tcp://aux.kko:2376")
                          + '[sites.kko.tls]\nca = "ca\\u0000.pem"\n', "sites.kko.tls.ca", "NUL character"),
    "deeply nested TOML": (SITE + "x = " + "[" * 3000 + "]" * 3000 + "\n", None, "TOML nested too deeply"),
    "deeply nested inline tables": (SITE + "x = " + "{a = " * 3000 + "1" + "}" * 3000 + "\n", None,
                                    "TOML nested too deeply"),
    "deeply nested compose YAML": (_nested_compose, "sites.kko.stacks.datatrail-client", "nested too deeply"),
    "5,000-digit window": (SITE + '[prometheus]\nurl = "http://p:9090"\nwindow = "' + "1" * 5000 + 'h"\n',
                           "prometheus.window", "expected a Prometheus duration such as 24h, from 1m to 1y"),
    "window over a year": (SITE + '[prometheus]\nurl = "http://p:9090"\nwindow = "9999w"\n', "prometheus.window",
                           "from 1m to 1y"),
    "5,000-digit timeout": ("timeout = 1" + "0" * 5000 + "\n" + SITE, None, "TOML value not usable"),
    "timeout 1e10": ("timeout = 1e10\n" + SITE, "timeout", "expected a number of seconds from 0.1 to 3600, got 1e+10"),
    "refresh a day and more": ("refresh = 86401\n" + SITE, "refresh", "from 0.1 to 86400, got 86401"),
    "refresh 0.01": ("refresh = 0.01\n" + SITE, "refresh", "from 0.1 to 86400, got 0.01"),
    "huge integer max_push_age": (SITE + '[prometheus]\nurl = "http://p:9090"\nmax_push_age = 9223372036854775807\n',
                                  "prometheus.max_push_age", "expected a number of seconds from 1 to 31622400"),
    "port 99999": ('[sites.kko]\ndocker = "tcp://aux.kko:99999"\n', "sites.kko.docker",
                   "expected a port from 1 to 65535, got 'tcp://aux.kko:99999'"),
    "port 0": ('[sites.kko]\ndocker = "tcp://aux.kko:0"\n', "sites.kko.docker", "expected a port from 1 to 65535"),
    "tcp without a port": ('[sites.kko]\ndocker = "tcp://aux.kko"\n', "sites.kko.docker",
                           "expected tcp://host:port with a port"),
    "http:// for a Docker engine": ('[sites.kko]\ndocker = "http://aux.kko:2375"\n', "sites.kko.docker",
                                    "expected a URL (unix:///path or tcp://host:port or ssh://user@host)"),
    "unix:// with a relative path": ('[sites.kko]\ndocker = "unix://run/kko.sock"\n', "sites.kko.docker",
                                     "expected unix:///path with an absolute socket path"),
    "unix socket path over 107 bytes": (f'[sites.kko]\ndocker = "unix:///{"s" * 120}.sock"\n', "sites.kko.docker",
                                        "a unix socket path is at most 107 bytes"),
    "ssh:// without a host": ('[sites.kko]\ndocker = "ssh://frbadmin@"\n', "sites.kko.docker", "with a host"),
    "a space in a host": ('[sites.kko]\ndocker = "ssh://aux kko"\n', "sites.kko.docker", "expected a URL"),
    "http:// with no host (buckets)": (SITE + '[buckets]\nurl = "http://"\n', "buckets.url",
                                       "expected a URL with a host (http://host or https://host), got 'http://'"),
    "port 99999 (prometheus)": (SITE + '[prometheus]\nurl = "http://p:99999"\n', "prometheus.url",
                                "expected a port from 1 to 65535"),
    "tcp:// for prometheus": (SITE + '[prometheus]\nurl = "tcp://p:9090"\n', "prometheus.url", "expected a URL"),
    "announce not a URL": (SITE + '[deploy]\nannounce = "hooks.example/x"\n', "deploy.announce", "expected a URL"),
    "empty site name": ('[sites.""]\ndocker = "unix:///x.sock"\n', "sites", "expected a name of letters, digits"),
    "escape in a stack name": (SITE + '[sites.kko.stacks]\n"\\u001b]0;pwned\\u0007" = "c.yaml"\n', "sites.kko.stacks",
                               "got '\\x1b]0;pwned\\x07'"),
    "slash in a site name": ('[sites."a/b"]\ndocker = "unix:///x.sock"\n', "sites", "got 'a/b'"),
    "service name with an escape": (lambda tree: ((tree / "c.yaml").write_text("services:\n  \"a\\e]0;x\\a\": {}\n"),
                                                  SITE + '[sites.kko.stacks]\na = "c.yaml"\n')[1],
                                    "sites.kko.stacks.a", "services: expected a name of letters, digits"),
    "a billion replicas": (lambda tree: ((tree / "c.yaml").write_text("services:\n  a:\n    deploy:\n      replicas: 1000000001\n"),
                                         SITE + '[sites.kko.stacks]\na = "c.yaml"\n')[1],
                           "sites.kko.stacks.a", "expected a whole number of replicas (0 to 1000000), got 1000000001"),
    "nothing to watch": ("", "(top level)", "nothing to watch"),
    "only [deploy]": ('[deploy]\nallow = true\n', "(top level)", "nothing to watch"),
    "audit log a directory": (SITE + '[deploy]\naudit = "/tmp"\n', "deploy.audit",
                              "file /tmp is a directory, expected a regular file"),
    "audit log /dev/full": (SITE + '[deploy]\naudit = "/dev/full"\n', "deploy.audit",
                            "file /dev/full is a character device, expected a regular file"),
    "lock /dev/null": (SITE + '[deploy]\nlock = "/dev/null"\n', "deploy.lock", "is a character device"),
    "compose file a FIFO": (lambda tree: (os.mkfifo(tree / "fifo.yaml"), SITE + '[sites.kko.stacks]\na = "fifo.yaml"\n')[1],
                            "sites.kko.stacks.a", "fifo.yaml is a FIFO, expected a regular file"),
    "compose file over 1 MiB": (lambda tree: ((tree / "big.yaml").write_text(COMPOSE + "#" * (1 << 20)),
                                              SITE + '[sites.kko.stacks]\na = "big.yaml"\n')[1],
                                "sites.kko.stacks.a", "larger than 1024 KiB"),
}


@pytest.fixture(autouse=True)
def no_workflow_workspace(tmp_path_factory, monkeypatch):
    """No ~/.config/workflow/workspace.yml: its Buckets URLs would count as something to watch."""
    monkeypatch.setenv("HOME", str(tmp_path_factory.mktemp("home")))


@pytest.mark.parametrize("name", list(EDGES))
def test_config_edge_is_one_line_naming_the_key_exit_2(tmp_path, capsys, name):
    text, key, expected = EDGES[name]
    if callable(text):
        text = text(tmp_path)
    path = tmp_path / "config.toml"
    path.write_text(text)
    code = cli.main(["--config", str(path), "config", "check"])
    captured = capsys.readouterr()
    assert code == 2, captured
    assert captured.out == ""
    line = captured.err.rstrip("\n")
    assert "\n" not in line and "Traceback" not in line
    assert line.startswith(f"dtmon: config error: {path}: " + (f"{key}: " if key else ""))
    assert expected in line
    assert "\x00" not in line  # a NUL is shown escaped, never written


def _run(args: list[str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DTMON_CONFIG"}
    return subprocess.run([sys.executable, "-m", "dtmon", *args], capture_output=True, text=True, env=env,
                          timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("source", ["/dev/zero", "fifo", "directory"])
def test_config_that_is_not_a_regular_file_is_refused_at_once(tmp_path, source):
    """/dev/zero was read until MemoryError and a FIFO waited on for ever."""
    if source == "fifo":
        path = tmp_path / "config.toml"
        os.mkfifo(path)
    elif source == "directory":
        path = tmp_path
    else:
        path = Path(source)
    kind = {"/dev/zero": "a character device", "fifo": "a FIFO", "directory": "a directory"}[source]
    proc = _run(["--config", str(path), "status"], timeout=20)
    assert proc.returncode == 2
    assert proc.stderr == f"dtmon: config error: {path}: not a regular file ({kind})\n"


def test_config_over_1_mib_is_refused(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text(SITE + "#" * (1 << 20))
    proc = _run(["--config", str(path), "config", "check"])
    assert (proc.returncode, proc.stderr) == (2, f"dtmon: config error: {path}: larger than 1024 KiB\n")


@pytest.mark.parametrize("command", [["status"], ["status", "--json"], ["audit"]])
def test_timeout_1e10_and_dev_full_fail_before_anything_runs(tmp_path, command):
    """`timeout = 1e10` passed `config check`, then overflowed; `audit = "/dev/full"` was read without end."""
    path = tmp_path / "config.toml"
    path.write_text("timeout = 1e10\n" + SITE if command[0] == "status" else SITE + '[deploy]\naudit = "/dev/full"\n')
    proc = _run(["--config", str(path), *command], timeout=20)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert ("timeout: expected a number of seconds" if command[0] == "status" else "deploy.audit:") in proc.stderr


@pytest.mark.parametrize(
    "args, expected",
    [
        (["restart", "kko", "x", "--wait-timeout", "1e10"], "--wait-timeout: expected a number of seconds from 1 to 86400, got 1e+10"),
        (["redeploy", "kko", "x", "--wait-timeout", "nan"], "--wait-timeout: expected a number of seconds from 1 to 86400, got nan"),
        (["restart", "kko", "x", "--wait-timeout", "soon"], "--wait-timeout: not a number: 'soon'"),
        (["audit", "--last", "0"], "--last: expected a whole number from 1 to 100000000, got '0'"),
        (["audit", "--last", "9" * 5000], "--last: expected a whole number from 1 to 100000000, got '" + "9" * 58 + "…"),
    ],
)
def test_numbers_on_the_command_line_are_bounded_too(tmp_path, capsys, args, expected):
    path = tmp_path / "config.toml"
    path.write_text(SITE)
    with pytest.raises(SystemExit) as caught:
        cli.main(["--config", str(path), *args])
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1].endswith(expected) and "Traceback" not in err


def test_url_checks_keep_the_forms_the_readme_names(tmp_path):
    """The URL rule refuses the bad, not the good: every documented form (IPv6, user, path, query) loads."""
    path = tmp_path / "config.toml"
    path.write_text(
        '[sites.a]\ndocker = "unix:///var/run/docker.sock"\n'
        '[sites.b]\ndocker = "tcp://frb-vsop.chime:2376"\n'
        '[sites.c]\ndocker = "ssh://frbadmin@aux.gbo"\n'
        '[sites.d]\ndocker = "ssh://outrigger_buffer.chime:2222"\n'
        '[sites.e]\ndocker = "tcp://[::1]:2375"\n'
        '[buckets]\nurl = "https://frb.chimenet.ca/workflow/buckets"\n'
        '[prometheus]\nurl = "http://user:secret@127.0.0.1:9090/"\nwindow = "1m"\nmax_push_age = 1\n'
        '[deploy]\nannounce = "https://hooks.example.org/services/T0/B0?token=x"\n'
    )
    config = load(path)
    assert [s.docker for s in config.sites][-1] == "tcp://[::1]:2375"
    assert config.prometheus is not None and config.prometheus.window == "1m"


def test_status_json_never_writes_nan_or_infinity():
    """A non-finite number that reaches the report becomes null: `NaN`/`Infinity` are not JSON."""
    snap = Snapshot(datetime(2026, 1, 1, tzinfo=timezone.utc),
                    (SiteStatus("kko", True, latency_ms=float("nan")), SiteStatus("gbo", True, latency_ms=math.inf)))
    text = render_json(snap)
    data = json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in status --json"))
    assert [site["latency_ms"] for site in data["sites"]] == [None, None]


# ---------------------------------------------------------------------------
# Property: whatever values the keys get, the loader answers a Config or one ConfigError line.
# ---------------------------------------------------------------------------


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    assert isinstance(value, dict)
    return "{" + ", ".join(f"{json.dumps(k, ensure_ascii=False)} = {toml_value(v)}" for k, v in value.items()) + "}"


ODD_STRINGS = st.sampled_from([
    "", "~", "~nosuchuser/x", "~root/c.yaml", "$HOME/c.yaml", "$NOSUCHVAR/c.yaml", "c.yaml", "/dev/zero", "/dev/full",
    "/tmp", "x" * 300, "a\x00b", "\x1b]0;pwned\x07", "unix://", "unix:///", "unix:///x.sock", "tcp://h:0",
    "tcp://h:99999", "tcp://h:2376", "tcp://[::1", "tcp://[::1]:2376", "ssh://", "ssh://u@h", "ssh://u@h/path",
    "http://", "http://h", "http://h:65536", "https://u:p@h/x?q#f", "http://x:2375", "24h", "0h", "1" * 5000 + "h",
    "9999999999999y", "1m", "datatrail", "datatrail-client",
])
SCALARS = st.one_of(
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(),
    st.text(max_size=30),
    ODD_STRINGS,
)
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(ODD_STRINGS | st.text(max_size=8), inner, max_size=3), max_leaves=8)


def keyed(keys: list[str], value=VALUES):
    return st.dictionaries(st.sampled_from(keys) | st.text(max_size=6), value, max_size=len(keys))


SITE_TABLE = st.fixed_dictionaries(
    {"docker": ODD_STRINGS | VALUES},
    optional={"stacks": st.dictionaries(ODD_STRINGS | st.text(max_size=6), ODD_STRINGS | VALUES, max_size=3) | VALUES,
              "tls": keyed(["ca", "cert", "key", "verify"]) | VALUES},
)
DOCUMENT = st.fixed_dictionaries(
    {},
    optional={
        "refresh": SCALARS, "timeout": SCALARS,
        "sites": st.dictionaries(ODD_STRINGS | st.text(max_size=6), SITE_TABLE | VALUES, max_size=3) | VALUES,
        "buckets": keyed(["url", "include", "consumers"]) | VALUES,
        "prometheus": st.fixed_dictionaries({"url": ODD_STRINGS | VALUES},
                                            optional={"window": ODD_STRINGS | VALUES, "max_push_age": SCALARS,
                                                      "queries": VALUES}) | VALUES,
        "deploy": keyed(["allow", "order", "core", "announce", "audit", "lock"]) | VALUES,
        "extra": VALUES,
    },
)


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(document=DOCUMENT)
def test_any_values_give_a_config_or_one_config_error_line(document):
    with tempfile.TemporaryDirectory() as folder:
        tree = Path(folder)
        (tree / "c.yaml").write_text(COMPOSE)
        path = tree / "config.toml"
        path.write_text("\n".join(f"{json.dumps(key, ensure_ascii=False)} = {toml_value(value)}"
                                  for key, value in document.items()) + "\n")
        try:
            config = load(path)
        except ConfigError as exc:
            message = str(exc)
            assert message.startswith(f"{path}: ")
            assert "\n" not in message and "\x00" not in message
            return
        assert isinstance(config, Config)
        assert 0.1 <= config.refresh <= 86400 and 0.1 <= config.timeout <= 3600
        assert config.sites or config.buckets or config.prometheus
        cli.describe(config)  # what `config check` prints is printable


URLISH = st.builds(lambda scheme, rest: scheme + rest,
                   st.sampled_from(["", "unix://", "tcp://", "ssh://", "http://", "https://", "HTTP://", "ftp://"]),
                   st.text(alphabet=st.sampled_from(list("ab1:/@[]%?#.- \x00\x1b9")) | st.characters(), max_size=40))


@settings(max_examples=500, deadline=None, database=None)
@given(value=URLISH, schemes=st.sampled_from([("unix", "tcp", "ssh"), ("http", "https")]))
def test_the_url_rule_answers_a_url_or_a_value_error(value, schemes):
    try:
        accepted = config_values.url(value, schemes, port_required=("tcp",))
    except ValueError as exc:
        assert str(exc).isprintable()
        return
    parts = config_values.urlsplit(accepted)
    assert parts.scheme.lower() in schemes
    assert parts.port is None or 1 <= parts.port <= 65535
    assert all(ch.isprintable() and not ch.isspace() for ch in accepted)


YAML_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(10**30), max_value=10**30), st.floats(),
                         st.text(max_size=12), st.sampled_from(["2", "${N}", "global", "replicated", "9" * 5000, "٣"]))
YAML_VALUES = st.recursive(YAML_SCALARS, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=8) | st.sampled_from(["deploy", "replicas", "mode"]),
                                             inner, max_size=3), max_leaves=10)
SERVICE = st.fixed_dictionaries({}, optional={
    "image": YAML_VALUES,
    "deploy": st.fixed_dictionaries({}, optional={"mode": YAML_VALUES, "replicas": YAML_VALUES}) | YAML_VALUES,
}) | YAML_VALUES
COMPOSE_DOC = st.fixed_dictionaries({}, optional={
    "services": st.dictionaries(YAML_SCALARS.filter(lambda k: k is None or not isinstance(k, float)) , SERVICE,
                                max_size=4) | YAML_VALUES,
    "version": YAML_VALUES,
})


@settings(max_examples=300, deadline=None, database=None)
@given(document=COMPOSE_DOC)
def test_any_compose_file_gives_services_or_one_value_error(document):
    import yaml

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "compose.yaml"
        path.write_text(yaml.safe_dump(document, allow_unicode=True))
        try:
            services = parse_compose(path)
        except ValueError as exc:
            assert "\n" not in str(exc)
            return
    assert services and all(isinstance(n, int) and 0 <= n <= MAX_REPLICAS for n in services.values())
    assert all(name.isprintable() and "/" not in name for name in services)
