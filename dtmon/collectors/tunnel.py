"""A supervised `ssh -N -L` tunnel to a remote Docker socket (docker-py's own ssh:// is not robust).

One thread per tunnel keeps ssh running: it starts ssh, notices when it ends (killed, dropped, refused),
says why, and starts it again after a backoff (1 s, doubling, at most `MAX_BACKOFF`). Polls never wait
for a tunnel that is down: `ensure` answers at once with the reason. ssh runs non-interactively with
strict host keys, so an unknown or changed host key is refused, never accepted.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

#: Longest wait between two attempts of a tunnel that keeps failing (seconds).
MAX_BACKOFF = 30.0
#: A tunnel that stayed up this long starts its backoff again from 1 s when it drops.
STABLE_AFTER = 30.0

UP, CONNECTING, RECONNECTING, CLOSED = "up", "connecting", "reconnecting", "closed"

_PR_SET_PDEATHSIG = 1


#: Seconds a request's failure waits to see whether ssh itself is ending (a kill closes its sockets first).
ENDING_GRACE = 0.5


def _ended(process: subprocess.Popen[bytes]) -> bool:
    """ssh has exited. Popen.poll() says "running" while another thread is in waitpid on it (the supervisor),
    so a zombie is read from /proc too."""
    if process.poll() is not None:
        return True
    try:
        with open(f"/proc/{process.pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] in (b"Z", b"X")
    except (OSError, IndexError):
        return True  # gone (reaped by the other thread)


class TunnelError(OSError):
    """The tunnel is not up; the message is one line naming the host and ssh's reason."""


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """ssh ends when the thread that started it (the tunnel's supervisor) ends, even if dtmon is killed."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except Exception:
        pass


def explain_ssh(said: str, destination: str, port: int | None, returncode: int | None) -> str:
    """One line from what ssh wrote on stderr (and how it ended), naming the host and what to do."""
    lines = [line.strip() for line in said.replace("\r", "\n").splitlines() if line.strip()]
    text = " ".join(lines)
    host = destination.rsplit("@", 1)[-1]
    known = re.search(r"host key (?:is known )?for (\S+?)(?: and|\s+has)", text, re.IGNORECASE)
    key_host = known.group(1) if known else (f"[{host}]:{port}" if port else host)
    bracketed = re.fullmatch(r"\[(.+)\]:(\d+)", key_host)
    if bracketed:  # what ssh checked, after the ssh config's HostName and Port (ssh-keyscan reads no config)
        host, port = bracketed.group(1), int(bracketed.group(2))
    elif known:
        host, port = key_host, None
    scan = f"ssh-keyscan {'-p ' + str(port) + ' ' if port else ''}{host}"
    if "REMOTE HOST IDENTIFICATION HAS CHANGED" in text or re.search(r"Host key for \S+ has changed", text):
        remove = re.search(r"remove with:\s*(ssh-keygen .*?-R \S+)", text)
        how = remove.group(1) if remove else f"ssh-keygen -R '{key_host}'"
        return (
            f"ssh: host key for {key_host} has CHANGED (refused: a reinstalled host, or someone in between): "
            f"if the new key is right, `{how}`, then `{scan} >> ~/.ssh/known_hosts`"
        )
    if "No " in text and "host key is known" in text or "Host key verification failed" in text:
        return (
            f"ssh: unknown host key for {key_host} (refused: strict checking): add it with "
            f"`{scan} >> ~/.ssh/known_hosts` after checking its fingerprint, or ssh to it once by hand"
        )
    if "Permission denied" in text:
        reason = re.search(r"(?:(\S+): )?(Permission denied \([^)]*\))", text)
        who = reason.group(1) if reason and reason.group(1) else destination
        if who != destination:
            who = f"{destination} ({who})"
        return f"ssh: {who} refused the login: {reason.group(2) if reason else 'Permission denied'} (wrong key, or no key loaded)"
    interesting = [
        line for line in lines
        if not line.startswith(("Warning: Permanently added", "Pseudo-terminal", "@@@", "debug"))
    ]
    if interesting:
        return "ssh: " + " / ".join(interesting[-2:])[:300]
    if returncode is not None and returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"ssh to {destination} ended by {name}"
    if returncode is not None:
        return f"ssh to {destination} exited {returncode} without a word"
    return f"ssh to {destination} ended"


def _remove_orphans() -> None:
    """Remove tunnel directories a killed dtmon left behind (its ssh ended with it: PR_SET_PDEATHSIG), i.e.
    ours whose owner process is gone."""
    for directory in Path(tempfile.gettempdir()).glob("dtmon-ssh-*"):
        try:
            if directory.stat().st_uid != os.geteuid():
                continue
            owner = int((directory / "owner").read_text().strip())
        except (OSError, ValueError):
            continue
        if owner != os.getpid() and not os.path.exists(f"/proc/{owner}"):
            shutil.rmtree(directory, ignore_errors=True)


class SshTunnel:
    """Forwards a local unix socket to the Docker socket on the host of an ssh:// URL, and keeps it up."""

    def __init__(
        self,
        url: str,
        remote_socket: str = "/var/run/docker.sock",
        ssh_config: Path | str | None = None,
        connect_timeout: float = 5.0,
    ) -> None:
        parts = urlsplit(url)
        if not parts.hostname:
            raise ValueError(f"no host in {url!r}")
        self.url = url
        self.destination = f"{parts.username}@{parts.hostname}" if parts.username else parts.hostname
        self.port = parts.port
        self.remote_socket = remote_socket
        self.ssh_config = Path(ssh_config) if ssh_config else None
        self.connect_timeout = connect_timeout
        _remove_orphans()
        self._dir = Path(tempfile.mkdtemp(prefix="dtmon-ssh-"))
        (self._dir / "owner").write_text(f"{os.getpid()}\n")
        self.socket = self._dir / "docker.sock"
        #: ssh's stderr goes to a file, not a pipe: a pipe nobody reads while ssh runs fills up and blocks it.
        self.log = self._dir / "ssh.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.state = CONNECTING
        self.reason: str | None = None  #: why the tunnel is not up (ssh's words), None while it is
        self.ever_up = False  #: the tunnel was up at least once
        self.next_try: float | None = None  #: monotonic time of the next attempt while reconnecting
        self.attempts = 0  #: ssh processes started so far
        self._log_offset = 0

    # -- what the collectors call -------------------------------------------

    @property
    def local_url(self) -> str:
        return f"unix://{self.socket}"

    def ensure(self, timeout: float) -> str:
        """The unix:// URL of the local end once the tunnel is up; raises TunnelError at once while it is down.

        Waits (at most `timeout`) only while an attempt is under way.
        """
        with self._cond:
            if self.state == CLOSED:
                raise TunnelError(f"ssh tunnel to {self.destination} is closed")
            if self._thread is None:
                self._thread = threading.Thread(target=self._supervise, daemon=True, name=f"ssh-{self.destination}")
                self._thread.start()
            deadline = time.monotonic() + timeout
            self._settle(min(timeout, 1.0))
            while self.state == CONNECTING:
                left = deadline - time.monotonic()
                if left <= 0:
                    if self.ever_up:
                        raise TunnelError(f"reconnecting (trying now): {self.reason or 'ssh ended'}")
                    text = self._log_text().strip()
                    said = f": {explain_ssh(text, self.destination, self.port, None)}" if text else ""
                    raise TunnelError(f"ssh to {self.destination}: not connected after {timeout:g}s (still trying){said}")
                self._cond.wait(left)
            if self.state == UP:
                return self.local_url
            raise TunnelError(self.describe())

    def _settle(self, timeout: float) -> None:
        """With the lock held: when ssh has just ended but the supervisor has not noticed yet, wait until it has."""
        deadline = time.monotonic() + timeout
        while self.state == UP and self._process is not None and _ended(self._process):
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._cond.wait(left)

    def failed(self) -> str | None:
        """After a request through the tunnel failed: why, when the tunnel itself is down (else None)."""
        with self._cond:
            # A killed ssh closes its forwarded connections while it is still exiting (not yet a zombie):
            # give it a moment to show as ended, then its supervisor a moment to say why.
            grace = time.monotonic() + ENDING_GRACE
            while self.state == UP and self._process is not None and not _ended(self._process):
                if time.monotonic() >= grace:
                    break
                self._cond.wait(0.01)
            self._settle(2.0)
            if self.state == UP:
                process = self._process
                if process is not None and not _ended(process):
                    return None  # ssh runs: the failure was beyond it
                # ssh has ended but its supervisor (busy, on a loaded machine) has not said so yet.
                code = process.returncode if process is not None else None
                reason = self.reason if process is None else explain_ssh(
                    self._log_text(), self.destination, self.port, code)
                return f"reconnecting (trying now): {reason or 'ssh ended'}"
        return self.describe()

    def describe(self) -> str:
        """One line on the tunnel's state: why it is down and when it is tried again."""
        with self._cond:
            if self.state == UP:
                return f"ssh tunnel to {self.destination} is up"
            reason = self.reason or "not connected yet"
            if self.state == RECONNECTING and self.ever_up:
                wait = max(0.0, (self.next_try or time.monotonic()) - time.monotonic())
                return f"reconnecting (next try in {wait:.0f}s): {reason}"
            return reason

    def channel_error(self) -> str | None:
        """What ssh said about the remote socket since the last call (e.g. it does not exist), or None."""
        try:
            with open(self.log, "rb") as f:
                f.seek(self._log_offset)
                text = f.read().decode(errors="replace")
                self._log_offset = f.tell()
        except OSError:
            return None
        found = re.findall(r"channel \d+: open failed: (.*)", text)
        if not found:
            return None
        return f"ssh reached {self.destination}, but its Docker socket {self.remote_socket} did not answer: {found[-1].strip()}"

    def close(self) -> None:
        """End ssh and the supervisor; remove the socket and the directory. Idempotent."""
        with self._cond:
            self.state = CLOSED
            self._stop.set()
            self._cond.notify_all()
            process = self._process
        if process is not None:
            self._end(process)
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(5)
        shutil.rmtree(self._dir, ignore_errors=True)

    @property
    def pid(self) -> int | None:
        """The running ssh's process id, if any."""
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    # -- the supervisor -------------------------------------------------------

    def _command(self) -> list[str]:
        ssh = shutil.which("ssh")
        if ssh is None:
            raise TunnelError("ssh:// needs the `ssh` command, which is not installed (Debian: openssh-client)")
        command = [ssh]
        if self.ssh_config is not None:
            command += ["-F", str(self.ssh_config)]
        if self.port:
            command += ["-p", str(self.port)]
        for option in (
            "BatchMode=yes",  # never a password or passphrase prompt: dtmon has no terminal to ask on
            "StrictHostKeyChecking=yes",  # an unknown or changed host key is refused, whatever the ssh config says
            "ExitOnForwardFailure=yes",
            "StreamLocalBindUnlink=yes",
            "ServerAliveInterval=5",
            "ServerAliveCountMax=2",
            f"ConnectTimeout={max(1, round(self.connect_timeout))}",
            "ControlMaster=no",  # a shared master (ControlPersist) would outlive the tunnel
            "ControlPath=none",
            "PermitLocalCommand=no",
            "RequestTTY=no",
        ):
            command += ["-o", option]
        command += ["-N", "-L", f"{self.socket}:{self.remote_socket}", "--", self.destination]
        return command

    def _end(self, process: subprocess.Popen[bytes]) -> None:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(2)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def _set(self, state: str, reason: str | None = None, next_try: float | None = None) -> None:
        with self._cond:
            if self.state == CLOSED:
                return
            self.state, self.reason, self.next_try = state, reason, next_try
            if state == UP:
                self.ever_up = True
            self._cond.notify_all()

    def _supervise(self) -> None:
        backoff = 1.0
        while not self._stop.is_set():
            started = time.monotonic()
            up_at = self._run_once()
            if self._stop.is_set():
                break
            if up_at is not None and time.monotonic() - up_at >= STABLE_AFTER:
                backoff = 1.0
            wait = max(0.0, backoff - (time.monotonic() - started) if up_at is None else backoff)
            with self._cond:
                if self.state != CLOSED:
                    self.state = RECONNECTING
                    self.next_try = time.monotonic() + wait
                    self._cond.notify_all()
            if self._stop.wait(wait):
                break
            backoff = min(backoff * 2, MAX_BACKOFF)
            self._set(CONNECTING, self.reason)

    def _run_once(self) -> float | None:
        """One ssh process, from start to end; returns when it came up (monotonic), or None if it never did."""
        try:
            command = self._command()
        except TunnelError as exc:
            self._set(RECONNECTING, str(exc))
            return None
        self._dir.mkdir(mode=0o700, exist_ok=True)
        self.socket.unlink(missing_ok=True)
        with open(self.log, "wb") as log:  # ssh keeps its own descriptor; ours closes here
            process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
                preexec_fn=_die_with_parent, start_new_session=True,
            )
        self._log_offset = 0
        with self._cond:
            self._process = process
            self.attempts += 1
            if self.state == CLOSED:
                self._end(process)
                return None
        up_at = None
        deadline = time.monotonic() + self.connect_timeout + 5.0
        while not self._stop.is_set() and process.poll() is None:
            if up_at is None and self.socket.exists():
                up_at = time.monotonic()
                self._set(UP)
            if up_at is None and time.monotonic() > deadline:
                self._end(process)
                break
            self._stop.wait(0.05 if up_at is None else 0.25)
        self._end(process)
        self.socket.unlink(missing_ok=True)
        said = self._log_text()
        if up_at is None and process.returncode is not None and process.returncode < 0 and not said:
            reason = f"ssh to {self.destination}: no connection within {self.connect_timeout + 5:g}s"
        else:
            reason = explain_ssh(said, self.destination, self.port, process.returncode)
        with self._cond:
            self._process = None
            if self.state != CLOSED:
                self.reason = reason
        return up_at

    def _log_text(self) -> str:
        try:
            with open(self.log, "rb") as f:
                f.seek(max(0, f.seek(0, os.SEEK_END) - 8192))
                return f.read().decode(errors="replace")
        except OSError:
            return ""
