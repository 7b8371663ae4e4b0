"""A Docker Engine API subset (API 1.41, as a 20.10 engine answers) serving one site of the simulated world.

Served over a unix socket by the standard library's threading HTTP server, so docker-py and the
docker CLI talk to it exactly as they talk to a real manager.
"""

from __future__ import annotations

import json
import os
import re
import socket
import socketserver
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .world import TASK_HISTORY, LogLine, SimService, SimTask, World, hex_id, swarm_id

API_VERSION = "1.41"
ENGINE_VERSION = "20.10.24+dfsg1"
STACK_LABEL = "com.docker.stack.namespace"

_HEADERS = {
    "Api-Version": API_VERSION,
    "Docker-Experimental": "false",
    "Ostype": "linux",
}


def rfc3339(when: float) -> str:
    """Engine timestamps: RFC 3339 in UTC with nanoseconds."""
    whole = int(when)
    nanos = int(round((when - whole) * 1e9))
    if nanos >= 1_000_000_000:
        whole, nanos = whole + 1, nanos - 1_000_000_000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{nanos:09d}Z"


def _version(changed_at: float) -> dict[str, int]:
    """An object version that moves when the object changes, as swarm's raft index does."""
    return {"Index": int(changed_at) % 100000 + 10}


# ---------------------------------------------------------------------------
# Engine JSON, shaped like a 20.10 engine's answers.
# ---------------------------------------------------------------------------


class SiteApi:
    """One site's engine answers, read from the world at the moment of each call."""

    def __init__(self, world: World, site: str) -> None:
        self.world = world
        self.site = site
        self.network_id = swarm_id(world.seed, "network", site, "host")

    def _image(self, svc: SimService) -> str:
        if svc.image.startswith("busybox"):
            return svc.image  # started by hand with `docker service create`: no digest pinned
        return f"{svc.image}@sha256:{hex_id(self.world.seed, 'image', svc.image)}"

    def _container_spec(self, svc: SimService) -> dict[str, Any]:
        spec: dict[str, Any] = {"Image": self._image(svc)}
        if svc.in_compose:
            spec["Labels"] = {STACK_LABEL: svc.stack}
        if svc.command:
            spec["Args"] = list(svc.command)
        spec["Env"] = [f"DATATRAIL_SITE={svc.site}"]
        spec["Privileges"] = {"CredentialSpec": None, "SELinuxContext": None}
        spec["StopGracePeriod"] = 10_000_000_000
        spec["Isolation"] = "default"
        return spec

    def _task_template(self, svc: SimService, force_update: int) -> dict[str, Any]:
        return {
            "ContainerSpec": self._container_spec(svc),
            "Resources": {"Limits": {"MemoryBytes": 4 * 1024**3}, "Reservations": {}},
            "RestartPolicy": {"Condition": "any", "Delay": 5_000_000_000, "MaxAttempts": 0},
            "Placement": {
                "Constraints": [f"node.hostname == {svc.nodes[0]}"] if len(svc.nodes) == 1 else [],
                "Platforms": [{"Architecture": "amd64", "OS": "linux"}],
            },
            "Networks": [{"Target": self.network_id, "Aliases": [svc.service]}],
            "ForceUpdate": force_update,
            "Runtime": "container",
        }

    def labels(self, svc: SimService) -> dict[str, str]:
        """The service's labels: `docker stack deploy` sets the namespace, also on a hand-made service in it."""
        labels = {STACK_LABEL: svc.stack}
        if svc.in_compose:
            labels["com.docker.stack.image"] = svc.image
        return labels

    def service_json(self, svc: SimService, now: float, status: bool) -> dict[str, Any]:
        times = self.world.times(svc, now)
        spec = {
            "Name": svc.name,
            "Labels": self.labels(svc),
            "TaskTemplate": self._task_template(svc, times.force_update),
            "Mode": {"Replicated": {"Replicas": svc.replicas}},
            "UpdateConfig": {"Parallelism": 1, "FailureAction": "pause", "Monitor": 5_000_000_000,
                             "MaxFailureRatio": 0, "Order": "stop-first"},
            "RollbackConfig": {"Parallelism": 1, "FailureAction": "pause", "Monitor": 5_000_000_000,
                               "MaxFailureRatio": 0, "Order": "stop-first"},
            "EndpointSpec": {"Mode": "vip"},
        }
        out: dict[str, Any] = {
            "ID": self.world.service_id(svc),
            "Version": _version(times.updated),
            "CreatedAt": rfc3339(times.created),
            "UpdatedAt": rfc3339(times.updated),
            "Spec": spec,
        }
        if times.force_update:
            previous = dict(spec, TaskTemplate=self._task_template(svc, times.force_update - 1))
            out["PreviousSpec"] = previous
        out["Endpoint"] = {"Spec": {"Mode": "vip"}, "VirtualIPs": [{"NetworkID": self.network_id}]}
        if times.update_state is not None:
            update: dict[str, Any] = {"State": times.update_state, "StartedAt": rfc3339(times.update_started or 0)}
            if times.update_completed is not None:
                update["CompletedAt"] = rfc3339(times.update_completed)
            update["Message"] = "update in progress" if times.update_state == "updating" else "update completed"
            out["UpdateStatus"] = update
        if status:
            out["ServiceStatus"] = {
                "RunningTasks": self.world.running(svc, now),
                "DesiredTasks": svc.replicas,
                "CompletedTasks": 0,
            }
        return out

    def task_json(self, svc: SimService, task: SimTask) -> dict[str, Any]:
        status: dict[str, Any] = {"Timestamp": rfc3339(task.since), "State": task.state, "Message": task.message}
        if task.err:
            status["Err"] = task.err
        if task.container_id is not None and task.state not in ("pending", "assigned", "preparing", "ready"):
            running = task.state == "running"
            status["ContainerStatus"] = {
                "ContainerID": task.container_id,
                "PID": (int(task.container_id[:4], 16) % 30000 + 1000) if running else 0,
                "ExitCode": task.exit_code if task.exit_code is not None else 0,
            }
        status["PortStatus"] = {}
        out: dict[str, Any] = {
            "ID": task.id,
            "Version": _version(task.since),
            "CreatedAt": rfc3339(task.created),
            "UpdatedAt": rfc3339(task.since),
            "Labels": {},
            "Spec": {k: v for k, v in self._task_template(svc, task.force_update).items() if k != "Runtime"},
            "ServiceID": self.world.service_id(svc),
            "Slot": task.slot,
        }
        node_id = self.world.node_id(self.site, task.node)
        if node_id:
            out["NodeID"] = node_id
        out["Status"] = status
        out["DesiredState"] = task.desired_state
        out["NetworksAttachments"] = [
            {
                "Network": {
                    "ID": self.network_id,
                    "Version": {"Index": 7},
                    "Spec": {"Name": "host", "Labels": {"com.docker.swarm.predefined": "true"},
                             "DriverConfiguration": {"Name": "host"}, "Scope": "swarm"},
                    "DriverState": {"Name": "host"},
                    "IPAMOptions": {"Driver": {}},
                }
            }
        ]
        return out

    def node_json(self) -> list[dict[str, Any]]:
        out = []
        for node in self.world.nodes(self.site):
            item: dict[str, Any] = {
                "ID": node.id,
                "Version": {"Index": 9},
                "CreatedAt": rfc3339(node.created),
                "UpdatedAt": rfc3339(self.world.start - 3600),
                "Spec": {"Labels": {}, "Role": node.role, "Availability": "active"},
                "Description": {
                    "Hostname": node.hostname,
                    "Platform": {"Architecture": "x86_64", "OS": "linux"},
                    "Resources": {"NanoCPUs": 32_000_000_000, "MemoryBytes": 134_858_452_992},
                    "Engine": {"EngineVersion": ENGINE_VERSION,
                               "Plugins": [{"Type": "Log", "Name": "json-file"}, {"Type": "Network", "Name": "host"},
                                           {"Type": "Network", "Name": "overlay"}, {"Type": "Volume", "Name": "local"}]},
                    "TLSInfo": {},
                },
                "Status": {"State": "ready", "Addr": node.addr},
            }
            if node.role == "manager":
                item["ManagerStatus"] = {"Leader": node.leader, "Reachability": "reachable", "Addr": f"{node.addr}:2377"}
                if not node.leader:
                    del item["ManagerStatus"]["Leader"]
            out.append(item)
        return out

    def version_json(self) -> dict[str, Any]:
        return {
            "Platform": {"Name": ""},
            "Components": [
                {"Name": "Engine", "Version": ENGINE_VERSION,
                 "Details": {"ApiVersion": API_VERSION, "Arch": "amd64", "Experimental": "false",
                             "GitCommit": "5d6db84", "GoVersion": "go1.19.8", "KernelVersion": "6.1.0-27-amd64",
                             "MinAPIVersion": "1.12", "Os": "linux"}},
            ],
            "Version": ENGINE_VERSION,
            "ApiVersion": API_VERSION,
            "MinAPIVersion": "1.12",
            "GitCommit": "5d6db84",
            "GoVersion": "go1.19.8",
            "Os": "linux",
            "Arch": "amd64",
            "KernelVersion": "6.1.0-27-amd64",
            "BuildTime": "2024-05-07T21:09:36.000000000+00:00",
        }

    def info_json(self, now: float) -> dict[str, Any]:
        nodes = self.world.nodes(self.site)
        leader = nodes[0]
        services = self.world.services(self.site)
        running = sum(self.world.running(s, now) for s in services)
        total = sum(len(self.world.tasks(s, now)) for s in services)
        return {
            "ID": swarm_id(self.world.seed, "engine", self.site).upper()[:24],
            "Containers": total,
            "ContainersRunning": running,
            "ContainersPaused": 0,
            "ContainersStopped": total - running,
            "Images": len({s.image for s in services}),
            "Driver": "overlay2",
            "LoggingDriver": "json-file",
            "CgroupDriver": "systemd",
            "CgroupVersion": "2",
            "KernelVersion": "6.1.0-27-amd64",
            "OperatingSystem": "Debian GNU/Linux 12 (bookworm)",
            "OSType": "linux",
            "Architecture": "x86_64",
            "NCPU": 32,
            "MemTotal": 134_858_452_992,
            "Name": leader.hostname,
            "ServerVersion": ENGINE_VERSION,
            "SystemTime": rfc3339(now),
            "Swarm": {
                "NodeID": leader.id,
                "NodeAddr": leader.addr,
                "LocalNodeState": "active",
                "ControlAvailable": True,
                "Error": "",
                "RemoteManagers": [{"NodeID": n.id, "Addr": f"{n.addr}:2377"} for n in nodes if n.role == "manager"],
                "Nodes": len(nodes),
                "Managers": sum(1 for n in nodes if n.role == "manager"),
                "Cluster": {
                    "ID": swarm_id(self.world.seed, "cluster", self.site),
                    "Version": {"Index": 10},
                    "CreatedAt": rfc3339(min(n.created for n in nodes)),
                    "UpdatedAt": rfc3339(self.world.start - 86400),
                    "Spec": {"Name": "default", "Labels": {},
                             "Orchestration": {"TaskHistoryRetentionLimit": TASK_HISTORY},
                             "Dispatcher": {"HeartbeatPeriod": 5_000_000_000}},
                },
            },
            "Warnings": None,
        }

    # -- filters ---------------------------------------------------------------

    def _labels_match(self, svc: SimService, wanted: list[str]) -> bool:
        labels = self.labels(svc)
        for item in wanted:
            key, sep, value = item.partition("=")
            if key not in labels or (sep and labels[key] != value):
                return False
        return True

    def services(self, filters: dict[str, list[str]], now: float, status: bool) -> list[dict[str, Any]]:
        out = []
        for svc in self.world.services(self.site):
            sid = self.world.service_id(svc)
            if "label" in filters and not self._labels_match(svc, filters["label"]):
                continue
            if "name" in filters and not any(svc.name.startswith(n) for n in filters["name"]):
                continue
            if "id" in filters and not any(sid.startswith(i) for i in filters["id"]):
                continue
            if "mode" in filters and "replicated" not in filters["mode"]:
                continue
            out.append(self.service_json(svc, now, status))
        return out

    def find_service(self, ref: str) -> SimService | None:
        """A service by full id, name, or unique id prefix, as the engine resolves them."""
        services = self.world.services(self.site)
        for svc in services:
            if ref in (self.world.service_id(svc), svc.name):
                return svc
        prefixed = [s for s in services if self.world.service_id(s).startswith(ref)]
        return prefixed[0] if len(prefixed) == 1 else None

    def tasks(self, filters: dict[str, list[str]], now: float) -> list[dict[str, Any]]:
        services = self.world.services(self.site)
        if "service" in filters:
            found = [self.find_service(ref) for ref in filters["service"]]
            services = [s for s in services if s in found]
        if "label" in filters:
            services = [s for s in services if self._labels_match(s, filters["label"])]
        nodes = {n.id: n.hostname for n in self.world.nodes(self.site)}
        wanted_nodes = {nodes.get(ref, ref) for ref in filters.get("node", [])}
        out = []
        for svc in services:
            for task in self.world.tasks(svc, now):
                if "desired-state" in filters and task.desired_state not in filters["desired-state"]:
                    continue
                if "id" in filters and not any(task.id.startswith(i) for i in filters["id"]):
                    continue
                if wanted_nodes and task.node not in wanted_nodes:
                    continue
                out.append(self.task_json(svc, task))
        return out

    def logs(self, svc: SimService, now: float, params: dict[str, str]) -> bytes:
        """The multiplexed log stream (8-byte frame headers) of a non-TTY service."""
        tail_text = params.get("tail", "all")
        tail = None if tail_text in ("all", "") else max(0, int(tail_text)) if tail_text.isdigit() else None
        lines: list[LogLine] = self.world.logs(svc, now, tail)
        want_out = _true(params.get("stdout"))
        want_err = _true(params.get("stderr"))
        since = float(params.get("since") or 0)
        sid = self.world.service_id(svc)
        frames = []
        for line in lines:
            if (line.stream == 1 and not want_out) or (line.stream == 2 and not want_err) or line.when < since:
                continue
            text = line.text
            if _true(params.get("details")):
                node_id = self.world.node_id(self.site, line.node) or ""
                text = (f"com.docker.swarm.node.id={node_id},com.docker.swarm.service.id={sid},"
                        f"com.docker.swarm.task.id={line.task_id} {text}")
            if _true(params.get("timestamps")):
                text = f"{rfc3339(line.when)} {text}"
            payload = (text + "\n").encode()
            frames.append(struct.pack(">BxxxL", line.stream, len(payload)) + payload)
        return b"".join(frames)


def _true(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true", "yes")


def parse_filters(text: str | None) -> dict[str, list[str]]:
    """The engine's `filters` parameter: {"key": ["v"]} or the older {"key": {"v": true}}."""
    if not text:
        return {}
    raw = json.loads(text)
    out: dict[str, list[str]] = {}
    for key, value in raw.items():
        if isinstance(value, dict):
            out[key] = [k for k, on in value.items() if on]
        elif isinstance(value, list):
            out[key] = [str(v) for v in value]
        else:
            out[key] = [str(value)]
    return out


# ---------------------------------------------------------------------------
# HTTP over a unix socket.
# ---------------------------------------------------------------------------

_VERSIONED = re.compile(r"^/v\d+\.\d+(/.*)$")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = f"Docker/{ENGINE_VERSION}"
    sys_version = "(linux)"
    timeout = 120  # an idle keep-alive connection is dropped after this

    server: "EngineServer"

    def version_string(self) -> str:
        return f"Docker/{ENGINE_VERSION} (linux)"

    def address_string(self) -> str:
        return "unix"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        pass

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, False)

    def _send(self, code: int, body: bytes, content_type: str | None = "application/json") -> None:
        self.send_response(code)
        for key, value in _HEADERS.items():
            self.send_header(key, value)
        if content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, code: int, data: Any) -> None:
        self._send(code, (json.dumps(data, separators=(",", ":")) + "\n").encode())

    def _error(self, code: int, message: str) -> None:
        self._json(code, {"message": message})

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        try:
            self._route()
        except (BrokenPipeError, ConnectionResetError):
            raise
        except Exception as exc:  # the engine answers 500 with a message, never drops the connection
            self._error(500, f"simulated engine: {type(exc).__name__}: {exc}")

    def _other(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self._error(404, "page not found")

    do_POST = do_PUT = do_DELETE = _other

    def _events(self, api: SiteApi) -> None:
        _handle_events(self, api)

    def _route(self) -> None:
        url = urlsplit(self.path)
        path = url.path
        match = _VERSIONED.match(path)
        if match:
            path = match.group(1)
        params = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        api: SiteApi = self.server.api
        now = api.world.now()
        outage_end = api.world.outage_end(api.site, now)
        if outage_end is not None:
            # A manager that stopped answering: the request hangs, then the connection drops unanswered.
            self.server.stopping.wait(max(0.0, outage_end - now))
            self.close_connection = True
            return
        if path == "/_ping":
            self._send(200, b"OK", "text/plain; charset=utf-8")
        elif path == "/events" and self.command == "GET":
            self._events(api)
        elif path == "/version":
            self._json(200, api.version_json())
        elif path == "/info":
            self._json(200, api.info_json(now))
        elif path == "/swarm":  # the cluster as `docker swarm inspect` shows it (its task history limit)
            self._json(200, api.info_json(now)["Swarm"]["Cluster"])
        elif path == "/nodes":
            self._json(200, api.node_json())
        elif path == "/services":
            self._json(200, api.services(parse_filters(params.get("filters")), now, _true(params.get("status"))))
        elif path == "/tasks":
            self._json(200, api.tasks(parse_filters(params.get("filters")), now))
        elif m := re.fullmatch(r"/nodes/([^/]+)", path):
            node = next((n for n in api.node_json() if m.group(1) in (n["ID"], n["Description"]["Hostname"])), None)
            self._json(200, node) if node else self._error(404, f"node {m.group(1)} not found")
        elif m := re.fullmatch(r"/tasks/([^/]+)", path):
            task = next((t for t in api.tasks({}, now) if t["ID"].startswith(m.group(1))), None)
            self._json(200, task) if task else self._error(404, f"task {m.group(1)} not found")
        elif m := re.fullmatch(r"/services/([^/]+)(/logs)?", path):
            svc = api.find_service(m.group(1))
            if svc is None:
                self._error(404, f"service {m.group(1)} not found")
            elif m.group(2):
                self._send(200, api.logs(svc, now, params), None)
            else:
                self._json(200, api.service_json(svc, now, status=False))
        else:
            self._error(404, "page not found")


def _service_states(api: SiteApi) -> dict[str, tuple[str, Any]]:
    """Each service's name by ID, with what an event would be about: its replica counts and version."""
    now = api.world.now()
    return {
        svc["ID"]: (svc["Spec"]["Name"], (svc.get("ServiceStatus"), svc.get("Version"), svc.get("UpdateStatus")))
        for svc in api.services({}, now, True)
    }


def _handle_events(handler: "_Handler", api: SiteApi) -> None:
    """GET /events: the stream stays open until the server stops or the site's manager goes away, and
    says `service update` (all a real service event carries: the name) whenever a service moves."""
    handler.send_response(200)
    for key, value in _HEADERS.items():
        handler.send_header(key, value)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Transfer-Encoding", "chunked")
    handler.end_headers()
    handler.wfile.flush()
    handler.close_connection = True
    before = _service_states(api)
    while not handler.server.stopping.wait(0.5):
        if api.world.outage_end(api.site, api.world.now()) is not None:
            return  # a manager that stopped answering drops its streams
        after = _service_states(api)
        for service_id, (name, state) in after.items():
            if before.get(service_id, (None, None))[1] == state:
                continue
            when = time.time()
            event = {"Type": "service", "Action": "update" if service_id in before else "create",
                     "Actor": {"ID": service_id, "Attributes": {"name": name}},
                     "scope": "swarm", "time": int(when), "timeNano": int(when * 1e9)}
            line = (json.dumps(event, separators=(",", ":")) + "\n").encode()
            try:
                handler.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
                handler.wfile.flush()
            except OSError:  # the client went away: the stream ends quietly
                return
        before = after


class EngineServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """One simulated manager on a unix socket; `start()` serves in a thread, `stop()` leaves nothing behind."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, api: SiteApi, path: str) -> None:
        if os.path.exists(path):
            os.unlink(path)
        super().__init__(path, _Handler)
        self.api = api
        self.path = path
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.stopping = threading.Event()  #: set by stop(): requests hanging in an outage return

    @property
    def url(self) -> str:
        return f"unix://{self.path}"

    def track(self, conn: socket.socket, opened: bool) -> None:
        with self._open_lock:
            (self._open.add if opened else self._open.discard)(conn)

    def start(self) -> "EngineServer":
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True, name=f"demo-engine-{self.api.site}"
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, drop open connections, remove the socket file."""
        self.stopping.set()
        if self._thread is not None:
            self.shutdown()
            self._thread.join()
            self._thread = None
        with self._open_lock:
            conns = list(self._open)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.server_close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
