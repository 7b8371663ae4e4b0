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
        #: ssh's stderr goes to a file, not a pipe: a pipe nobody reads while ssh runs fills up and blocks it.
        self.log = self._dir / "ssh.log"
        self._process: subprocess.Popen[bytes] | None = None

    def _log_tail(self, limit: int = 300) -> str:
        """The end of what ssh said on stderr, on one line."""
        try:
            with open(self.log, "rb") as f:
                f.seek(max(0, f.seek(0, os.SEEK_END) - 4096))
                lines = f.read().decode(errors="replace").strip().splitlines()
        except OSError:
            return ""
        text = " / ".join(line.strip() for line in lines[-3:] if line.strip())
        return text if len(text) <= limit else "..." + text[-limit:]

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
        self._dir.mkdir(mode=0o700, exist_ok=True)
        with open(self.log, "wb") as log:  # ssh keeps its own descriptor; ours closes here
            self._process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.socket.exists():
                return f"unix://{self.socket}"
            if self._process.poll() is not None:
                said = self._log_tail() or f"exit {self._process.returncode}"
                raise OSError(f"ssh to {self.destination} failed: {said}")
            time.sleep(0.05)
        self.close(keep_dir=True)
        said = self._log_tail()
        raise OSError(f"ssh tunnel to {self.destination} not up after {timeout:g}s" + (f": {said}" if said else ""))

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
