"""Real Docker engines for tests: private dockerd instances, each its own single-node swarm on loopback.

Usable from any test module (conftest.py puts tests/ on sys.path)::

    from engines import Dockerd, require_engines, start_all, stop_all, write_config

    require_engines()                            # skip here, fail under CI, when dockerd cannot run
    engines = start_all(["chime", "kko"])        # parallel start, swarm init, test image imported
    engines["chime"].stack_deploy("stacks/server-compose.yaml", "datatrail")
    engines["chime"].service_ls()               # {"datatrail_server": (1, 1), ...} from the docker CLI
    stop_all(engines.values())                  # no process, mount, socket or directory left behind

Every engine keeps image pulls on loopback (HTTP(S)_PROXY points at a closed port), uses no
bridge and no iptables, and lives in its own short temp dir (unix socket paths are limited to
108 bytes).
"""

from __future__ import annotations

import ctypes
import http.client
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

DOCKERD = shutil.which("dockerd") or "/usr/sbin/dockerd"
#: The Debian CLI that matches the 20.10 engine (/usr/local/bin/docker is newer and earlier on PATH).
DOCKER_CLI = "/usr/bin/docker"
BUSYBOX = "/bin/busybox"
#: The tiny local image every test service runs. A registry-style name: swarm tries to pull it at
#: each task start, which the proxy settings make fail at once on loopback.
IMAGE = "dtmon-test/busybox:latest"
STACK_LABEL = "com.docker.stack.namespace"

#: Environment of every engine: registry traffic goes to a closed loopback port.
PROXY_ENV = {"HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9", "NO_PROXY": ""}

_BUSYBOX_APPLETS = ("sh", "sleep", "false", "true", "echo", "cat", "ls", "env", "date", "printf", "yes", "wc")

_PR_SET_CHILD_SUBREAPER = 36


class EngineError(RuntimeError):
    """An engine that did not start, answer or clean up as expected; the message has the log tail."""


def missing_requirements() -> str | None:
    """Why real engines cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "dockerd needs root"
    for path, package in ((DOCKERD, "docker.io"), (DOCKER_CLI, "docker.io"), (BUSYBOX, "busybox-static")):
        if not os.access(path, os.X_OK):
            return f"{path} not found (install the Debian package {package})"
    if not shutil.which("containerd"):
        return "containerd not found (install the Debian package docker.io)"
    return None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------
# Process helpers: nothing reaps orphans on this machine, so we do it ourselves.
# ---------------------------------------------------------------------------


def become_subreaper() -> None:
    """Make this process adopt its orphaned descendants (containerd, shims) so they can be reaped."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, parent pid) of a process, or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[1])


def alive(pid: int) -> bool:
    """True when the process exists and is not a zombie (`kill -0` says yes to zombies)."""
    stat = proc_stat(pid)
    return stat is not None and stat[0] != "Z"


def reap(pid: int) -> None:
    """Collect the exit status of `pid` if it is our (possibly adopted) child."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def end_process(pid: int, grace: float = 5.0) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds; reaps it when it is ours."""
    if not alive(pid):
        reap(pid)
        return
    for sig, wait in ((signal.SIGCONT, 0.0), (signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            reap(pid)
            if not alive(pid):
                break
            time.sleep(0.02)
        if not alive(pid):
            break
    reap(pid)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


def _pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _unmount(path: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.umount2(path.encode(), 2) != 0:  # MNT_DETACH
        err = ctypes.get_errno()
        if err not in (22, 2):  # EINVAL: not a mount point any more; ENOENT: gone
            raise OSError(err, os.strerror(err), path)


def mounts_under(prefix: str) -> list[str]:
    """Mount points at or below `prefix`, deepest first."""
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].replace("\\040", " ")
            if point == prefix or point.startswith(prefix.rstrip("/") + "/"):
                found.append(point)
    return sorted(found, key=len, reverse=True)


def _tiny_rootfs() -> bytes:
    """A tar of a root filesystem holding only static busybox and a few applet links."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name in ("bin", "tmp", "etc"):
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if name == "tmp" else 0o755
            tar.addfile(info)
        tar.add(BUSYBOX, arcname="bin/busybox")
        for applet in _BUSYBOX_APPLETS:
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type, info.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(info)
        passwd = b"root:x:0:0:root:/:/bin/sh\n"
        info = tarfile.TarInfo("etc/passwd")
        info.size = len(passwd)
        tar.addfile(info, io.BytesIO(passwd))
    return buf.getvalue()


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


# ---------------------------------------------------------------------------
# One engine.
# ---------------------------------------------------------------------------


class Dockerd:
    """A private dockerd with its own data, exec root, pid file, unix socket and swarm."""

    def __init__(self, name: str, base: str | Path = "/tmp", directory: str | Path | None = None) -> None:
        self.name = name
        # Short paths: the engine's socket and containerd's sockets live under here (108-byte limit).
        self.dir = Path(directory) if directory else Path(tempfile.mkdtemp(prefix=f"dtm{name[:5]}-", dir=base))
        self.sock = self.dir / "d.sock"
        self.data_root = self.dir / "data"
        self.exec_root = self.dir / "x"
        self.pidfile = self.dir / "dockerd.pid"
        self.log_path = self.dir / "dockerd.log"
        self.config_file = self.dir / "daemon.json"
        self.docker_config = self.dir / "cli"
        self.swarm_port = free_port()
        self.cgroup_parent = f"/{self.dir.name}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.paused = False
        #: More dockerd arguments, e.g. a tcp:// --host with --tlsverify and its certificates.
        self.extra_args: list[str] = []
        longest = self.exec_root / "containerd" / "containerd.sock.ttrpc"
        if len(str(longest)) > 100:
            if directory is None:
                self.dir.rmdir()
            raise EngineError(f"{self.name}: {self.dir} is too deep for unix socket paths; use a shorter base")

    @classmethod
    def adopt(cls, directory: str | Path) -> "Dockerd":
        """An engine for a directory a crashed test run left behind, so that `stop()` can clean it up."""
        return cls(Path(directory).name, directory=directory)

    def __repr__(self) -> str:
        return f"Dockerd({self.name!r}, {self.url})"

    @property
    def url(self) -> str:
        """What dtmon's config and docker-py take: unix:///.../d.sock."""
        return f"unix://{self.sock}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    # -- life cycle -----------------------------------------------------------

    def start(self) -> None:
        """Launch dockerd without waiting for it (see `wait_ready`)."""
        become_subreaper()
        if self.pidfile.exists():
            # A stale pid file makes dockerd refuse to start; it is stale when its process is gone.
            try:
                old = int(self.pidfile.read_text().strip() or 0)
            except ValueError:
                old = 0
            if old and alive(old):
                raise EngineError(f"{self.name}: dockerd {old} still runs")
            self.pidfile.unlink()
        self._end_orphans()
        self.data_root.mkdir(exist_ok=True)
        self.exec_root.mkdir(exist_ok=True)
        self.docker_config.mkdir(exist_ok=True)
        self.config_file.write_text("{}\n")
        env = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY")}
        env.update(PROXY_ENV)
        args = [
            DOCKERD,
            f"--config-file={self.config_file}",
            f"--host=unix://{self.sock}",
            f"--data-root={self.data_root}",
            f"--exec-root={self.exec_root}",
            f"--pidfile={self.pidfile}",
            f"--cgroup-parent={self.cgroup_parent}",
            "--bridge=none",
            "--iptables=false",
            "--ip6tables=false",
            "--ip-masq=false",
            "--ip-forward=false",
            "--storage-driver=vfs",
            "--shutdown-timeout=2",
            "--log-level=warn",
            *self.extra_args,
        ]
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True
            )
        finally:
            log.close()
        self.paused = False

    def ping(self, timeout: float = 1.0) -> bool:
        """True when the engine answers GET /_ping on its socket."""
        conn = _UnixHTTPConnection(str(self.sock), timeout)
        try:
            conn.request("GET", "/_ping")
            return conn.getresponse().status == 200
        except OSError:
            return False
        finally:
            conn.close()

    def api(self, method: str, path: str, body: Any = None, timeout: float = 10.0) -> Any:
        """One raw Engine API call; returns the decoded JSON (or None); raises EngineError on >= 400."""
        conn = _UnixHTTPConnection(str(self.sock), timeout)
        try:
            data = json.dumps(body).encode() if body is not None else None
            conn.request(method, path, body=data, headers={"Content-Type": "application/json"} if data else {})
            resp = conn.getresponse()
            raw = resp.read()
        finally:
            conn.close()
        if resp.status >= 400:
            raise EngineError(f"{self.name}: {method} {path}: {resp.status} {raw[:300]!r}")
        return json.loads(raw) if raw.strip() else None

    def _check_running(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise EngineError(f"{self.name}: dockerd exited with {self.proc.returncode}\n{self.log_tail()}")

    def wait_until(self, condition, timeout: float, what: str, interval: float = 0.05):
        """Poll `condition()` until it returns something truthy; raise EngineError naming `what`."""
        deadline = time.monotonic() + timeout
        last_exc: Exception | None = None
        while True:
            self._check_running()
            try:
                result = condition()
                if result:
                    return result
            except (OSError, EngineError, subprocess.SubprocessError) as exc:
                last_exc = exc
            if time.monotonic() > deadline:
                raise EngineError(f"{self.name}: gave up after {timeout:g}s waiting for {what} ({last_exc})\n{self.log_tail()}")
            time.sleep(interval)

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Wait until the engine answers on its socket."""
        self.wait_until(self.ping, timeout, "the engine to answer /_ping")

    def wait_manager(self, timeout: float = 60.0) -> None:
        """Wait until `docker service ls` answers (a restarted manager needs seconds to elect itself)."""
        self.wait_until(lambda: self.docker("service", "ls", "-q", check=False).returncode == 0, timeout,
                        "`docker service ls` to answer", interval=0.2)

    def swarm_init(self) -> None:
        """Make the engine a one-node swarm listening on loopback only."""
        self.docker(
            "swarm", "init", "--advertise-addr", "127.0.0.1", "--listen-addr", f"127.0.0.1:{self.swarm_port}",
            "--task-history-limit", "5",
        )
        self.wait_manager()
        # Nothing here publishes ports; without the ingress network dockerd stops 5 s sooner
        # (it otherwise waits out "timeout while waiting for ingress network removal") and no
        # overlay sandbox is made.
        # Its removal leaves a docker_gwbridge network whose bridge device would outlive the engine on
        # the host: remove that too (libnetwork deletes the device with the network when it made it).
        def overlay_plumbing_gone() -> bool:
            for network in ("ingress", "docker_gwbridge"):
                try:
                    self.api("DELETE", f"/networks/{network}")
                except EngineError as exc:
                    if " 404 " not in str(exc):
                        raise
            names = {n.get("Name") for n in self.api("GET", "/networks")}
            return not names & {"ingress", "docker_gwbridge"}

        self.wait_until(overlay_plumbing_gone, 30, "the ingress and docker_gwbridge networks to be removed",
                        interval=0.2)

    def swarm_join(self, manager: "Dockerd", role: str = "manager") -> None:
        """Join `manager`'s swarm as a `role` ("manager" or "worker"), listening on loopback only."""
        token = manager.docker("swarm", "join-token", "-q", role).stdout.strip()
        self.docker(
            "swarm", "join", "--token", token, "--advertise-addr", f"127.0.0.1:{self.swarm_port}",
            "--listen-addr", f"127.0.0.1:{self.swarm_port}", f"127.0.0.1:{manager.swarm_port}",
        )
        if role == "manager":
            self.wait_manager()

    def node_id(self) -> str:
        """This engine's swarm node id."""
        return self.api("GET", "/info")["Swarm"]["NodeID"]

    def import_image(self, tag: str = IMAGE) -> None:
        """`docker import` a rootfs of static busybox as `tag`."""
        self.docker("import", "-", tag, input=_tiny_rootfs())

    def boot(self, timeout: float = 60.0) -> "Dockerd":
        """Start, init the swarm and import the test image (what a fresh site needs)."""
        self.start()
        self.wait_ready(timeout)
        self.swarm_init()
        self.import_image()
        return self

    def restart(self, timeout: float = 60.0) -> None:
        """Start again after `kill`/`stop(keep=True)` on the same data; waits until the manager answers."""
        self.start()
        self.wait_ready(timeout)
        self.wait_manager(timeout)

    def pause(self) -> None:
        """SIGSTOP dockerd: its socket still accepts connections but nothing answers (a hung manager)."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        """SIGCONT a paused dockerd."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)
        self.paused = False

    def kill(self) -> None:
        """SIGKILL dockerd like a crash would: containerd and containers are left behind until `stop`/`restart`."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()
        self.paused = False

    def stop(self, keep: bool = False) -> None:
        """End dockerd and everything it started, unmount what it mounted; remove its dir unless `keep`."""
        if self.proc is not None:
            if self.paused:
                self.resume()
            if not keep:
                # Test containers hold no state: ending them first spares dockerd's stop timeouts.
                self._end_containers()
            # A dockerd sharing the machine with another swarm can wait 5 s for its ingress job at
            # shutdown; when its state is thrown away anyway, 2 s of grace is enough.
            end_process(self.proc.pid, grace=15.0 if keep else 2.0)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        self._end_orphans()
        self.pidfile.unlink(missing_ok=True)
        self.sock.unlink(missing_ok=True)
        left = self.leftovers()
        if left:
            raise EngineError(f"{self.name}: still there after stop: {left}")
        if not keep:
            shutil.rmtree(self.dir, ignore_errors=True)
            leftovers = [p for p in (self.dir,) if p.exists()]
            if leftovers:
                raise EngineError(f"{self.name}: could not remove {leftovers}")

    def _end_orphans(self) -> None:
        """End what a dead dockerd leaves: containerd, shims, container processes, mounts, cgroups."""
        containerd_pid_file = self.exec_root / "containerd" / "containerd.pid"
        if containerd_pid_file.exists():
            try:
                pid = int(containerd_pid_file.read_text().strip() or 0)
            except ValueError:
                pid = 0
            if pid and "containerd" in _cmdline(pid):
                end_process(pid, grace=5.0)
            containerd_pid_file.unlink(missing_ok=True)
        marker = str(self.exec_root)
        for pid in _pids():
            if pid != os.getpid() and marker in _cmdline(pid):
                end_process(pid, grace=2.0)
        self._end_containers(remove_cgroups=True)
        for point in mounts_under(str(self.dir)):
            _unmount(point)
        self._reap_adopted()

    def _end_containers(self, remove_cgroups: bool = False) -> None:
        """SIGKILL every process in this engine's cgroups (its containers); optionally remove the cgroups."""
        for controller in ("pids", "memory", "cpu", "cpuacct", "cpuset", "devices", "freezer", "blkio", "systemd"):
            root = Path("/sys/fs/cgroup") / controller / self.cgroup_parent.lstrip("/")
            # Deepest first; cgroups that vanish while we walk are skipped (os.walk ignores errors).
            groups = [Path(d) for d, _, _ in os.walk(root, topdown=False)]
            for group in groups:
                try:
                    pids = [int(p) for p in (group / "cgroup.procs").read_text().split()]
                except OSError:
                    continue
                for pid in pids:
                    end_process(pid, grace=0.0)
            if remove_cgroups:
                for group in groups:
                    try:
                        group.rmdir()
                    except OSError:
                        pass

    @staticmethod
    def _reap_adopted() -> None:
        """Reap zombies we adopted as subreaper: containerd, its shims, and container processes.

        Only those: a zombie child that another test's Popen still has to wait for is left alone
        (container processes are told apart by living in a nested pid namespace).
        """
        me = os.getpid()
        for pid in _pids():
            stat = proc_stat(pid)
            if not (stat and stat[0] == "Z" and stat[1] == me):
                continue
            try:
                comm = Path(f"/proc/{pid}/comm").read_text().strip()
                nspid = next((line.split()[1:] for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                              if line.startswith("NSpid:")), [])
            except OSError:
                continue
            if comm.startswith(("containerd", "runc")) or len(nspid) > 1:
                reap(pid)

    def leftovers(self) -> list[str]:
        """Processes (alive or zombie) and mounts of this engine that are still around."""
        found = []
        marker = str(self.dir)
        for pid in _pids():
            if pid != os.getpid() and marker in _cmdline(pid):
                found.append(f"process {pid}: {_cmdline(pid)[:100]}")
        if self.proc is not None and proc_stat(self.proc.pid) is not None:
            found.append(f"dockerd {self.proc.pid} ({proc_stat(self.proc.pid)[0]})")
        found += [f"mount {point}" for point in mounts_under(marker)]
        return found

    def netns(self) -> list[Path]:
        """The network namespaces this engine made (bind mounts under its exec root), e.g. netns/default."""
        return [Path(point) for point in mounts_under(str(self.exec_root / "netns"))]

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # -- the docker CLI -----------------------------------------------------------

    def docker(self, *args: str, check: bool = True, input: bytes | None = None, timeout: float = 120.0,
               cwd: str | Path | None = None) -> subprocess.CompletedProcess[str]:
        """Run /usr/bin/docker against this engine; raise EngineError with its output when it fails and `check`."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        env["DOCKER_CONFIG"] = str(self.docker_config)
        env["DOCKER_CLI_HINTS"] = "false"
        proc = subprocess.run(
            [DOCKER_CLI, "--host", self.url, *args],
            input=input,
            capture_output=True,
            env=env,
            timeout=timeout,
            cwd=cwd,
        )
        out = subprocess.CompletedProcess(
            proc.args, proc.returncode, proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace")
        )
        self._reap_adopted()  # shims' short-lived starter processes end up ours as zombies
        if check and out.returncode != 0:
            raise EngineError(f"{self.name}: docker {' '.join(args)} exited {out.returncode}: {out.stderr.strip()}")
        return out

    def env(self) -> dict[str, str]:
        """Environment for running /usr/bin/docker yourself against this engine (DOCKER_HOST set)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        env.update(DOCKER_HOST=self.url, DOCKER_CONFIG=str(self.docker_config))
        return env

    def service_ls(self) -> dict[str, tuple[int, int]]:
        """`docker service ls`: swarm service name -> (running, desired)."""
        out = self.docker("service", "ls", "--format", "{{json .}}").stdout
        result = {}
        for line in out.splitlines():
            row = json.loads(line)
            running, desired = row["Replicas"].split(" ")[0].split("/")
            result[row["Name"]] = (int(running), int(desired))
        return result

    def stack_deploy(self, compose: str | Path, name: str, *extra: str) -> None:
        """`docker stack deploy -c compose name` (no registry lookups: the image is local)."""
        compose = Path(compose).resolve()
        self.docker("stack", "deploy", "--resolve-image", "never", *extra, "-c", str(compose), name, cwd=compose.parent)

    def stack_rm(self, name: str, timeout: float = 60.0) -> None:
        """`docker stack rm name`, then wait until its services, tasks and networks are all gone."""
        self.docker("stack", "rm", name)
        self.wait_stack_gone(name, timeout)

    def wait_stack_gone(self, name: str, timeout: float = 60.0) -> None:
        """Wait until nothing labelled with the stack namespace `name` is left (network removal races)."""
        label = json.dumps({"label": [f"{STACK_LABEL}={name}"]})
        from urllib.parse import quote

        query = f"?filters={quote(label)}"

        def gone() -> bool:
            return not (
                self.api("GET", "/services" + query)
                or self.api("GET", "/tasks" + query)
                or self.api("GET", "/networks" + query)
            )

        self.wait_until(gone, timeout, f"stack {name} to be gone", interval=0.2)

    def wait_converged(self, expect: dict[str, tuple[int, int]], timeout: float = 60.0) -> dict[str, tuple[int, int]]:
        """Wait until `docker service ls` shows (running, desired) for every service named in `expect`."""

        def check():
            now = self.service_ls()
            return now if all(now.get(k) == v for k, v in expect.items()) else None

        return self.wait_until(check, timeout, f"services to reach {expect}", interval=0.3)

    def tasks(self, service: str) -> list[dict[str, Any]]:
        """Every task (with history) of one service, straight from the Engine API."""
        from urllib.parse import quote

        return self.api("GET", "/tasks?filters=" + quote(json.dumps({"service": [service]})))


# ---------------------------------------------------------------------------
# Several engines at once.
# ---------------------------------------------------------------------------


def start_all(names: Iterable[str], timeout: float = 90.0) -> dict[str, Dockerd]:
    """Boot one engine per name in parallel; on any failure stop them all and raise."""
    engines = {name: Dockerd(name) for name in names}
    errors: dict[str, BaseException] = {}

    def boot(engine: Dockerd) -> None:
        try:
            engine.boot(timeout)
        except BaseException as exc:  # reported below, after every thread is done
            errors[engine.name] = exc

    threads = [threading.Thread(target=boot, args=(e,), name=f"boot-{e.name}") for e in engines.values()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        stop_all(engines.values())
        raise EngineError("; ".join(f"{name}: {exc}" for name, exc in errors.items()))
    return engines


def require_engines() -> None:
    """Skip the calling test when real engines cannot run here; fail instead under CI (CI is set)."""
    import pytest

    reason = missing_requirements()
    if reason is None:
        return
    message = f"real Docker engines are needed: {reason} (run scripts/install-test-deps as root)"
    if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def compose_variant(source: str | Path, dest: str | Path, drop: Iterable[str] = (),
                    add: dict[str, dict[str, Any]] | None = None) -> Path:
    """Write a copy of a compose file without the services in `drop` and with those in `add`."""
    import yaml

    data = yaml.safe_load(Path(source).read_text())
    data = {k: v for k, v in data.items() if not k.startswith("x-")}  # anchors are already merged
    for name in drop:
        del data["services"][name]
    data["services"].update(add or {})
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(yaml.safe_dump(data, sort_keys=False))
    return dest


def service_def(command: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    """A compose service definition in the style of tests/world: the test image on the host network."""
    return {
        "image": IMAGE,
        "command": command or ["sleep", "86400"],
        "stop_grace_period": "1s",
        "networks": ["hostnet"],
        **extra,
    }


def write_config(path: str | Path, sites: Iterable[tuple[str, str, dict[str, Path]]], *,
                 timeout: float = 3.0, refresh: float = 1.0, extra: str = "") -> Path:
    """A dtmon config TOML: `sites` is (name, docker url, {stack: compose file}) in order; `extra` is appended."""
    lines = [f"refresh = {refresh}", f"timeout = {timeout}", ""]
    for name, url, stacks in sites:
        lines += [f"[sites.{name}]", f"docker = {json.dumps(url)}", f"[sites.{name}.stacks]"]
        lines += [f"{json.dumps(stack)} = {json.dumps(str(file))}" for stack, file in stacks.items()]
        lines.append("")
    path = Path(path)
    path.write_text("\n".join(lines) + extra)
    return path


def stop_all(engines: Iterable[Dockerd]) -> None:
    """Stop every engine in parallel; raise the first cleanup failure after all were tried."""
    errors: list[BaseException] = []

    def stop(engine: Dockerd) -> None:
        try:
            engine.stop()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=stop, args=(e,)) for e in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def clean_stale(base: str | Path = "/tmp", min_age: float = 120.0) -> list[Path]:
    """Stop and remove engine dirs that a killed test run left behind; returns what was cleaned.

    A dir is stale when it is older than `min_age` seconds and no dockerd of it runs under a live
    parent (a dockerd whose test process died is adopted by init). Run: python tests/engines.py clean
    """
    cleaned = []
    for directory in Path(base).glob("dtm*-*"):
        if not (directory / "daemon.json").exists() or time.time() - directory.stat().st_mtime < min_age:
            continue
        owners = [
            pid for pid in _pids()
            if f"--exec-root={directory}/x" in _cmdline(pid) and _cmdline(pid).startswith(DOCKERD)
        ]
        if any(alive(pid) and (proc_stat(pid) or ("", 1))[1] != 1 for pid in owners):
            continue  # a live test run owns it
        Dockerd.adopt(directory).stop()
        cleaned.append(directory)
    return cleaned


if __name__ == "__main__":
    import sys

    if sys.argv[1:] == ["clean"]:
        for path in clean_stale():
            print(f"cleaned {path}")
    else:
        print("usage: python tests/engines.py clean   (stop engines a killed test run left behind)")
        sys.exit(2)
