"""A supervised `ssh -N -L` tunnel to a remote Docker socket (docker-py's own ssh:// is not robust)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit


class SshTunnel:
    """Forwards a local unix socket to /var/run/docker.sock on the host in an ssh:// URL."""

    def __init__(self, url: str, remote_socket: str = "/var/run/docker.sock") -> None:
        parts = urlsplit(url)
        if not parts.hostname:
            raise ValueError(f"no host in {url!r}")
        self.destination = f"{parts.username}@{parts.hostname}" if parts.username else parts.hostname
        self.port = parts.port
        self.remote_socket = remote_socket
        self._dir = Path(tempfile.mkdtemp(prefix="dtmon-ssh-"))
        self.socket = self._dir / "docker.sock"
        self._process: subprocess.Popen[bytes] | None = None

    def ensure(self, timeout: float) -> str:
        """Start (or restart) ssh if it is not running; return the unix:// URL of the local end."""
        if self._process is not None and self._process.poll() is None and self.socket.exists():
            return f"unix://{self.socket}"
        self.close(keep_dir=True)
        ssh = shutil.which("ssh")
        if ssh is None:
            raise OSError("ssh:// needs the `ssh` command, which is not installed")
        command = [
            ssh, "-N", "-o", "BatchMode=yes", "-o", "ExitOnForwardFailure=yes",
            "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=2",
            "-o", f"ConnectTimeout={max(1, int(timeout))}",
            "-L", f"{self.socket}:{self.remote_socket}", self.destination,
        ]
        if self.port:
            command[1:1] = ["-p", str(self.port)]
        self._process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.socket.exists():
                return f"unix://{self.socket}"
            if self._process.poll() is not None:
                err = (self._process.stderr.read() if self._process.stderr else b"").decode(errors="replace")
                raise OSError(f"ssh to {self.destination} failed: {err.strip() or 'exit ' + str(self._process.returncode)}")
            time.sleep(0.05)
        self.close(keep_dir=True)
        raise OSError(f"ssh tunnel to {self.destination} not up after {timeout:g}s")

    def close(self, keep_dir: bool = False) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(2)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None
        if self.socket.exists():
            os.unlink(self.socket)
        if not keep_dir:
            shutil.rmtree(self._dir, ignore_errors=True)
