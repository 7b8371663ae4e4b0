"""A real OpenSSH server for tests: its own host key, authorized_keys and config on a loopback port.

Nothing of the machine's own ssh setup is used or changed (no ~/.ssh, no /etc/ssh): the server gets
`sshd -f CONFIG -D`, and the client side gets its own ssh config file (IdentityFile,
UserKnownHostsFile) that dtmon is pointed at with `[ssh] config`::

    from sshd import Sshd, require_sshd

    require_sshd()
    server = Sshd(tmp_path).start()
    server.trust()                              # the client's known_hosts gets the host key
    server.url                                  # ssh://root@127.0.0.1:PORT
    server.alias_url                            # ssh://dtmon-test-sshd (HostName/Port/User from the config)
    server.stop()                               # no process, socket or file left behind
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from engines import alive, end_process, free_port, proc_stat

SSHD = "/usr/sbin/sshd"
SSH_KEYGEN = shutil.which("ssh-keygen") or "/usr/bin/ssh-keygen"
#: The Host alias the client config defines for this server.
ALIAS = "dtmon-test-sshd"


def missing_requirements() -> str | None:
    """Why a test sshd cannot run here, or None when it can."""
    if os.geteuid() != 0:
        return "sshd on a test port needs root"
    for path, package in ((SSHD, "openssh-server"), (SSH_KEYGEN, "openssh-client")):
        if not os.access(path, os.X_OK):
            return f"{path} not found (install the Debian package {package})"
    if not shutil.which("ssh"):
        return "ssh not found (install the Debian package openssh-client)"
    return None


def require_sshd() -> None:
    """Skip the calling test when a test sshd cannot run here; fail instead under CI."""
    import pytest

    reason = missing_requirements()
    if reason is None:
        return
    message = f"a real sshd is needed: {reason} (run scripts/install-test-deps as root)"
    if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def keygen(path: Path, comment: str) -> Path:
    """A new ed25519 key pair without passphrase at `path` (and `path`.pub)."""
    subprocess.run([SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)], check=True,
                   stdin=subprocess.DEVNULL)
    return path


class Sshd:
    """One sshd on 127.0.0.1 with everything it needs under `directory`."""

    def __init__(self, directory: Path, user: str = "root") -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.user = user
        self.port = free_port()
        self.host_key = self.dir / "host_ed25519"
        self.client_key = self.dir / "client_ed25519"
        self.authorized_keys = self.dir / "authorized_keys"
        self.known_hosts = self.dir / "known_hosts"
        self.config = self.dir / "sshd_config"
        self.client_config = self.dir / "ssh_config"
        self.pidfile = self.dir / "sshd.pid"
        self.log = self.dir / "sshd.log"
        self.proc: subprocess.Popen[bytes] | None = None
        keygen(self.host_key, "dtmon-test-host")
        keygen(self.client_key, "dtmon-test-client")
        self.authorized_keys.write_text(Path(f"{self.client_key}.pub").read_text())
        self.known_hosts.write_text("")
        self.config.write_text(
            "\n".join(
                [
                    f"Port {self.port}",
                    "ListenAddress 127.0.0.1",
                    f"HostKey {self.host_key}",
                    f"PidFile {self.pidfile}",
                    f"AuthorizedKeysFile {self.authorized_keys}",
                    # The temp dir's owner and modes are the test runner's, not a home directory's.
                    "StrictModes no",
                    "PubkeyAuthentication yes",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "UsePAM no",
                    "PermitRootLogin prohibit-password",
                    f"AllowUsers {user}",
                    "AllowStreamLocalForwarding yes",
                    "X11Forwarding no",
                    "PermitTTY no",
                    "LogLevel VERBOSE",
                    "",
                ]
            )
        )
        # The operator's side: what `[ssh] config` points dtmon at. -F means ssh reads no other config.
        self.client_config.write_text(
            "\n".join(
                [
                    f"Host {ALIAS}",
                    "    HostName 127.0.0.1",
                    f"    Port {self.port}",
                    f"    User {user}",
                    "Host *",
                    f"    IdentityFile {self.client_key}",
                    "    IdentitiesOnly yes",
                    f"    UserKnownHostsFile {self.known_hosts}",
                    "    GlobalKnownHostsFile /dev/null",
                    "",
                ]
            )
        )

    @property
    def url(self) -> str:
        """ssh://user@127.0.0.1:PORT."""
        return f"ssh://{self.user}@127.0.0.1:{self.port}"

    @property
    def alias_url(self) -> str:
        """ssh://ALIAS: host, port and user come from the client config."""
        return f"ssh://{ALIAS}"

    def start(self, timeout: float = 15.0) -> "Sshd":
        """Run sshd in the foreground (-D) and wait until it accepts connections."""
        # sshd refuses to start without its privilege separation directory (the Debian package's
        # service would create it): an empty, root-owned directory.
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        log = open(self.log, "ab")
        try:
            self.proc = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", str(self.config)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        import socket

        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
                    conn.settimeout(2)
                    if conn.recv(8).startswith(b"SSH-"):
                        return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"sshd did not answer on port {self.port} within {timeout:g}s: {self.log_tail()}")
            time.sleep(0.05)

    def trust(self, key: Path | None = None) -> None:
        """Put the server's host key (or `key`'s public half) in the client's known_hosts, as ssh-keyscan would."""
        public = Path(f"{key or self.host_key}.pub").read_text().split()
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {public[0]} {public[1]}\n")

    def forget(self) -> None:
        """Empty the client's known_hosts."""
        self.known_hosts.write_text("")

    def sessions(self) -> list[int]:
        """Pids of this server's per-connection processes (children of the listener)."""
        if self.proc is None:
            return []
        found = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                stat = proc_stat(int(entry))
                if stat is not None and stat[1] == self.proc.pid and stat[0] != "Z":
                    found.append(int(entry))
        return found

    def stop(self) -> None:
        """End sshd and its sessions; remove its pid file."""
        if self.proc is not None:
            for pid in self.sessions():
                end_process(pid, grace=1.0)
            end_process(self.proc.pid, grace=3.0)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            if alive(self.proc.pid):
                raise RuntimeError(f"sshd {self.proc.pid} still runs after stop")
            self.proc = None
        self.pidfile.unlink(missing_ok=True)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
