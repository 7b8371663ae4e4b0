"""Config of the ways to reach a site: several managers, ssh (config file, remote socket), TLS directories."""

from __future__ import annotations

from pathlib import Path

import pytest

from dtmon.config import DEFAULT_REMOTE_SOCKET, ConfigError, load


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_a_list_of_managers_keeps_its_order_and_the_first_is_docker(tmp_path):
    path = write(tmp_path, '[sites.chime]\ndocker = ["unix:///var/run/docker.sock", "ssh://frbadmin@outrigger_buffer.chime"]\n')
    site = load(path).site("chime")
    assert site.endpoints == ("unix:///var/run/docker.sock", "ssh://frbadmin@outrigger_buffer.chime")
    assert site.docker == "unix:///var/run/docker.sock"


def test_one_manager_is_its_own_list(tmp_path):
    site = load(write(tmp_path, '[sites.kko]\ndocker = "ssh://frbadmin@aux.kko:2222"\n')).site("kko")
    assert site.endpoints == ("ssh://frbadmin@aux.kko:2222",)
    assert site.socket == DEFAULT_REMOTE_SOCKET == "/var/run/docker.sock"
    assert site.ssh_config is None


def test_remote_socket_and_ssh_config_relative_to_the_config_file(tmp_path):
    (tmp_path / "ssh").mkdir()
    (tmp_path / "ssh" / "config").write_text("Host aux.kko\n  User frbadmin\n")
    path = write(tmp_path, '[ssh]\nconfig = "ssh/config"\n'
                           '[sites.kko]\ndocker = "ssh://aux.kko"\nsocket = "/run/user/1000/docker.sock"\n')
    config = load(path)
    assert config.ssh_config == (tmp_path / "ssh" / "config").resolve()
    assert config.site("kko").ssh_config == config.ssh_config
    assert config.site("kko").socket == "/run/user/1000/docker.sock"


def test_tls_directory_in_the_docker_cert_path_layout(tmp_path):
    certs = tmp_path / "gbo"
    certs.mkdir()
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (certs / name).write_text("x")
    tls = load(write(tmp_path, '[sites.gbo]\ndocker = "tcp://aux.gbo:2376"\ntls = "gbo"\n')).site("gbo").tls
    assert (tls.ca, tls.cert, tls.key, tls.verify) == (certs / "ca.pem", certs / "cert.pem", certs / "key.pem", True)


@pytest.mark.parametrize(
    "text, expected",
    [
        ('[sites.c]\ndocker = []\n', "sites.c.docker: expected a manager URL or a list of them, got an empty list"),
        ('[sites.c]\ndocker = ["unix:///a.sock", "aux:2376"]\n', "sites.c.docker[1]: expected a URL (unix:///path or tcp://host:port or ssh://user@host), got 'aux:2376'"),
        ('[sites.c]\ndocker = ["unix:///a.sock", "unix:///a.sock"]\n', "sites.c.docker: 'unix:///a.sock' is listed twice"),
        ('[sites.c]\ndocker = [1]\n', "sites.c.docker"),
        ('[sites.c]\ndocker = "ssh://-oProxyCommand"\n', "sites.c.docker: expected ssh://user@host, got a user or host that ssh would read as an option: 'ssh://-oProxyCommand'"),
        ('[sites.c]\ndocker = "ssh://-l@aux"\n', "sites.c.docker: expected ssh://user@host, got a user or host that ssh would read as an option"),
        ('[sites.c]\ndocker = "ssh://u:secret@aux"\n', "sites.c.docker: expected ssh://user@host without a password"),
        ('[sites.c]\ndocker = "ssh://aux:notaport"\n', "sites.c.docker: expected a port from 1 to 65535"),
        ('[sites.c]\ndocker = "ssh://aux/var/run/docker.sock"\n', "sites.c.docker: expected ssh://user@host without a path"),
        ('[sites.c]\ndocker = "unix://relative.sock"\n', "sites.c.docker: expected unix:///path with an absolute socket path"),
        ('[sites.c]\ndocker = "unix:///a.sock"\nsocket = "/x.sock"\n', "sites.c.socket: only ssh:// managers have a remote socket"),
        ('[sites.c]\ndocker = "ssh://aux"\nsocket = "docker.sock"\n', "sites.c.socket: expected an absolute path without spaces"),
        ('[sites.c]\ndocker = "tcp://aux:2376"\ntls = "nowhere"\n', "sites.c.tls: expected a directory holding ca.pem, cert.pem and key.pem, got 'nowhere'"),
        ('[ssh]\nconfig = "nope/config"\n', "ssh.config: file {tmp}/nope/config does not exist"),
        ('[ssh]\nconfg = "x"\n', "ssh.confg: unknown key"),
    ],
)
def test_bad_reach_config_gets_one_line(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    assert expected.format(tmp=tmp_path) in message


def test_tls_directory_missing_a_file_names_it(tmp_path):
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "ca.pem").write_text("x")
    with pytest.raises(ConfigError) as info:
        load(write(tmp_path, '[sites.c]\ndocker = "tcp://aux:2376"\ntls = "certs"\n'))
    assert str(info.value).endswith(f"sites.c.tls: {tmp_path / 'certs'} has no cert.pem, key.pem (a DOCKER_CERT_PATH directory has all three)")
