"""Config loading: what a good file becomes, and the one clear message every bad file gets."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dtmon import cli
from dtmon.config import ConfigError, load, locate

COMPOSE = """\
version: "3.8"
services:
  server:
    image: chimefrb/maestro-datatrail:latest
  postgres_exporter:
    image: prometheuscommunity/postgres-exporter
    deploy:
      replicas: 2
  autossh_kko:
    image: chimefrb/autossh
    deploy:
      mode: global
"""


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "stacks").mkdir()
    (tmp_path / "stacks" / "server-compose.yaml").write_text(COMPOSE)
    return tmp_path


def write(tree: Path, text: str) -> Path:
    path = tree / "config.toml"
    path.write_text(text)
    return path


GOOD = """\
refresh = 2.5
timeout = 4

[sites.kko]
docker = "unix:///run/kko.sock"
[sites.kko.stacks]
datatrail-client = "stacks/server-compose.yaml"

[sites.chime]
docker = "tcp://frb-vsop.chime:2376"
[sites.chime.stacks]
datatrail-daemons = "stacks/server-compose.yaml"
datatrail = "stacks/server-compose.yaml"

[sites.gbo]
docker = "ssh://frbadmin@aux.gbo"
"""


def test_good_config_keeps_site_and_stack_order_and_resolves_paths(tree):
    config = load(write(tree, GOOD))
    assert [s.name for s in config.sites] == ["kko", "chime", "gbo"]
    assert (config.refresh, config.timeout) == (2.5, 4.0)
    chime = config.site("chime")
    assert list(chime.stacks) == ["datatrail-daemons", "datatrail"]
    assert chime.stacks["datatrail"] == (tree / "stacks" / "server-compose.yaml").resolve()
    assert chime.compose_services["datatrail"] == {"server": 1, "postgres_exporter": 2, "autossh_kko": 1}
    assert config.site("gbo").stacks == {}
    with pytest.raises(KeyError):
        config.site("hco")


def test_integers_fill_number_fields_and_zero_replicas_is_kept(tree):
    (tree / "stacks" / "zero.yaml").write_text("services:\n  idle:\n    deploy:\n      replicas: 0\n")
    path = write(tree, 'refresh = 2\ntimeout = 3\n[sites.chime]\ndocker = "unix:///x.sock"\n'
                       '[sites.chime.stacks]\ndatatrail = "stacks/zero.yaml"\n'
                       '[prometheus]\nurl = "http://p:9090"\nmax_push_age = 600\n')
    config = load(path)
    assert (config.refresh, config.timeout, config.prometheus.max_push_age) == (2.0, 3.0, 600.0)
    assert config.site("chime").compose_services["datatrail"] == {"idle": 0}


def test_compose_replicas_as_docker_stack_deploy_reads_them(tree):
    """A quoted count is a count (the docker CLI casts it); an interpolated one is unknown until deploy: 1."""
    (tree / "stacks" / "vars.yaml").write_text(
        'services:\n  quoted:\n    deploy:\n      replicas: "2"\n'
        '  interpolated:\n    deploy:\n      replicas: ${STAGERS:-3}\n'
    )
    path = write(tree, '[sites.chime]\ndocker = "unix:///x.sock"\n[sites.chime.stacks]\ndatatrail = "stacks/vars.yaml"\n')
    assert load(path).site("chime").compose_services["datatrail"] == {"quoted": 2, "interpolated": 1}


def test_compose_path_expands_home_and_variables(tree, monkeypatch):
    monkeypatch.setenv("DT_STACKS", str(tree / "stacks"))
    path = write(tree, '[sites.chime]\ndocker = "unix:///x.sock"\n[sites.chime.stacks]\n'
                       'datatrail = "$DT_STACKS/server-compose.yaml"\n')
    assert load(path).site("chime").stacks["datatrail"] == tree / "stacks" / "server-compose.yaml"


def test_every_relative_path_is_relative_to_the_config_file_not_the_cwd(tree, tmp_path_factory, monkeypatch):
    (tree / "certs").mkdir()
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (tree / "certs" / name).write_text("x")
    path = write(tree, '[sites.chime]\ndocker = "tcp://frb-vsop.chime:2376"\n'
                       '[sites.chime.stacks]\ndatatrail = "stacks/server-compose.yaml"\n'
                       '[sites.chime.tls]\nca = "certs/ca.pem"\ncert = "certs/cert.pem"\nkey = "certs/key.pem"\n'
                       '[deploy]\naudit = "state/audit.jsonl"\nlock = "state/dtmon.lock"\n')
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    config = load(path)
    tls = config.site("chime").tls
    assert (tls.ca, tls.cert, tls.key) == tuple((tree / "certs" / n).resolve() for n in ("ca.pem", "cert.pem", "key.pem"))
    assert config.site("chime").stacks["datatrail"] == (tree / "stacks" / "server-compose.yaml").resolve()
    assert config.deploy.audit == (tree / "state" / "audit.jsonl").resolve()
    assert config.deploy.lock == (tree / "state" / "dtmon.lock").resolve()


def test_home_in_a_path_still_expands(tree, monkeypatch):
    monkeypatch.setenv("HOME", str(tree / "home"))
    path = write(tree, '[sites.kko]\ndocker = "unix:///x.sock"\n[deploy]\naudit = "~/audit.jsonl"\n')
    assert load(path).deploy.audit == tree / "home" / "audit.jsonl"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("refresh = 5\ntimeout = \n", "TOML syntax error"),
        ('[sites.chime]\ndockr = "unix:///x.sock"\n', "sites.chime.dockr: unknown key"),
        ('colour = "blue"\n', "colour: unknown key"),
        ('timeout = "fast"\n', "timeout: expected a number, got a string"),
        ('refresh = "5"\n', "refresh: expected a number, got a string"),
        ('[deploy]\nallow = "true"\n', "deploy.allow: expected true or false, got a string"),
        ("[sites.kko]\ndocker = 2376\n", "sites.kko.docker: expected a string or an array, got an integer"),
        ("[sites.kko]\n", "sites.kko.docker: required key is missing"),
        ('[sites.kko]\ndocker = "unix:///x"\nstacks = ["a"]\n', "sites.kko.stacks: expected a table, got an array"),
        ('[sites.kko]\ndocker = "aux.kko:2376"\n', "sites.kko.docker: expected a URL (unix:///path or tcp://host:port or ssh://user@host), got 'aux.kko:2376'"),
        ("refresh = 0\n", "refresh: expected a number of seconds from 0.1 to 86400, got 0"),
        ("refresh = nan\n", "refresh: expected a number of seconds from 0.1 to 86400, got nan"),
        ("timeout = inf\n", "timeout: expected a number of seconds from 0.1 to 3600, got inf"),
        ("timeout = -inf\n", "timeout: expected a number of seconds from 0.1 to 3600, got -inf"),
        ('[prometheus]\nurl = "http://p:9090"\nmax_push_age = nan\n',
         "prometheus.max_push_age: expected a number of seconds from 1 to 31622400, got nan"),
        ('[prometheus]\nurl = "http://p:9090"\nwindow = "0h"\n',
         "prometheus.window: expected a Prometheus duration such as 24h, from 1m to 1y, got '0h'"),
        ('[prometheus]\nurl = "http://p:9090"\nwindow = "000m"\n', "prometheus.window: expected a Prometheus duration"),
        ("[health]\ncrashloop_failures = 0\n",
         "health.crashloop_failures: expected a whole number of failures from 1 to 1000000, got 0"),
        ("[health]\ncrashloop_failures = 2.5\n", "health.crashloop_failures: expected an integer, got a number"),
        ("[health]\ncrashloop_window = -1\n",
         "health.crashloop_window: expected a number of seconds from 1 to 604800, got -1"),
        ("[health]\nerror_max_age = nan\n", "health.error_max_age: expected a number of seconds from 1 to"),
        ("[health]\nwindow = 60\n", "health.window: unknown key"),
        ('[sites.kko]\ndocker = "unix:///x"\n[sites.kko.stacks]\ndatatrail-client = "stacks/nope.yaml"\n',
         "sites.kko.stacks.datatrail-client: compose file {tree}/stacks/nope.yaml does not exist"),
    ],
)
def test_bad_config_message_names_file_key_and_expectation(tree, text, expected):
    path = write(tree, text)
    with pytest.raises(ConfigError) as info:
        load(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert expected.format(tree=tree) in message
    assert "\n" not in message


@pytest.mark.parametrize(
    "compose, expected",
    [
        ("services:\n  server:\n\timage: x\n", "not valid YAML (line 3, column 1): found character '\\t'"),
        ("services: {}\n", "expected a compose file with a non-empty `services` mapping"),
        ("- just\n- a list\n", "expected a compose file with a non-empty `services` mapping"),
        ('services:\n  server:\n    deploy:\n      replicas: "two"\n',
         "services.server.deploy.replicas: expected a whole number of replicas (0 to 1000000), got 'two'"),
        ("services:\n  server:\n    deploy:\n      replicas: -3\n",
         "services.server.deploy.replicas: expected a whole number of replicas (0 to 1000000), got -3"),
        ("services:\n  server:\n    deploy:\n      replicas: 1.5\n", "got 1.5"),
    ],
)
def test_unparsable_compose_file_names_config_key_and_compose_file(tree, compose, expected):
    bad = tree / "stacks" / "broken.yaml"
    bad.write_text(compose)
    path = write(tree, f'[sites.chime]\ndocker = "unix:///x"\n[sites.chime.stacks]\ndatatrail = "{bad}"\n')
    with pytest.raises(ConfigError) as info:
        load(path)
    message = str(info.value)
    assert message.startswith(f"{path}: sites.chime.stacks.datatrail: {bad}: ")
    assert expected in message


def test_config_check_prints_what_it_understood(tree, capsys):
    path = write(tree, GOOD)
    assert cli.main(["config", "check", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.index("kko: unix:///run/kko.sock") < out.index("chime: tcp://frb-vsop.chime:2376") < out.index("gbo:")
    assert "services: server, postgres_exporter, autossh_kko" in out
    assert "refresh: 2.5s  timeout: 4s" in out
    assert "health: crash loop at 3 failures in 600s; a healthy service's last error is dimmed after 3600s" in out


def test_health_thresholds_are_read(tree):
    from dtmon.config import HealthConfig

    assert load(write(tree, GOOD)).health == HealthConfig(3, 600.0, 3600.0)
    path = write(tree, GOOD.replace("timeout = 4\n", "timeout = 4\n[health]\ncrashloop_failures = 5\n"
                                    "crashloop_window = 120\nerror_max_age = 60\n"))
    assert load(path).health == HealthConfig(5, 120.0, 60.0)


@pytest.mark.parametrize("command", [["config", "check"], ["status"], ["status", "--json"]])
def test_bad_config_exits_2_with_one_line_and_no_traceback(tree, command):
    path = write(tree, "[sites.kko]\ndocker = 2376\n")
    env = {k: v for k, v in os.environ.items() if k != "DTMON_CONFIG"}
    proc = subprocess.run([sys.executable, "-m", "dtmon", "--config", str(path), *command],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip() == f"dtmon: config error: {path}: sites.kko.docker: expected a string or an array, got an integer"


def test_missing_config_file_exits_2(tree, capsys):
    assert cli.main(["--config", str(tree / "absent.toml"), "status"]) == 2
    err = capsys.readouterr().err
    assert f"{tree / 'absent.toml'}: no such file" in err


def test_locate_order(tree, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tree / "xdg"))
    monkeypatch.delenv("DTMON_CONFIG", raising=False)
    assert locate(None) is None  # nothing there yet
    xdg = tree / "xdg" / "dtmon" / "config.toml"
    xdg.parent.mkdir(parents=True)
    xdg.write_text("")
    assert locate(None) == xdg
    monkeypatch.setenv("DTMON_CONFIG", str(tree / "env.toml"))
    assert locate(None) == tree / "env.toml"
    assert locate(str(tree / "flag.toml")) == tree / "flag.toml"
