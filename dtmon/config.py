"""dtmon's configuration: one typed model read from one TOML file."""

from __future__ import annotations

import math
import os
import re
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from . import config_values as values

DEFAULT_ORDER = ("datatrail", "datatrail-daemons", "datatrail-client")

#: Where the Docker socket is on a manager reached over ssh://, unless `sites.NAME.socket` says otherwise.
DEFAULT_REMOTE_SOCKET = "/var/run/docker.sock"

DEFAULT_QUERIES: dict[str, str] = {
    "replication_pending": "sum by (site) (datatrail_replication_pending_files)",
    "replication_done": "sum by (site) (increase(datatrail_replication_completed_files_total[$window]))",
    "replication_failed": "sum by (site) (increase(datatrail_replication_failed_files_total[$window]))",
    "deletion_pending": "sum by (site) (datatrail_deletion_pending_files)",
    "deletion_done": "sum by (site) (increase(datatrail_deletion_completed_files_total[$window]))",
    "deletion_failed": "sum by (site) (increase(datatrail_deletion_failed_files_total[$window]))",
    "targets_up": "up",
    "push_age": "time() - push_time_seconds{job=\"metric_pusher\"}",
    "pg_up": "pg_up",
}


class ConfigError(Exception):
    """A configuration file that cannot be used; the message names file, key and expectation.

    The message is one printable line: a key or value from the file with a newline, NUL or escape sequence in it
    is shown escaped (`\\n`, `\\x00`, `\\x1b`), never written to the terminal raw.
    """

    def __init__(self, message: str) -> None:
        super().__init__("".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in message))


# ---------------------------------------------------------------------------
# The raw file shape, checked by msgspec (unknown keys and wrong types refused).
# ---------------------------------------------------------------------------


class _Tls(msgspec.Struct, forbid_unknown_fields=True):
    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    verify: bool = True


class _Site(msgspec.Struct, forbid_unknown_fields=True):
    docker: str | list[str]
    stacks: dict[str, str] = {}
    tls: _Tls | str | None = None
    socket: str | None = None


class _Ssh(msgspec.Struct, forbid_unknown_fields=True):
    config: str | None = None


class _Buckets(msgspec.Struct, forbid_unknown_fields=True):
    url: str | list[str]
    token_env: str | None = None
    include: list[str] = msgspec.field(default_factory=lambda: ["datatrail-*"])
    consumers: dict[str, str] = {}


class _Prometheus(msgspec.Struct, forbid_unknown_fields=True):
    url: str
    window: str = "24h"
    queries: dict[str, str] = {}
    max_push_age: float = 900.0


class _Health(msgspec.Struct, forbid_unknown_fields=True):
    crashloop_failures: int = 3
    crashloop_window: float = 600.0
    error_max_age: float = 3600.0


class _Deploy(msgspec.Struct, forbid_unknown_fields=True):
    allow: bool = False
    order: list[str] = msgspec.field(default_factory=lambda: list(DEFAULT_ORDER))
    core: str = "datatrail"
    announce: str = ""
    audit: str = "~/.local/state/dtmon/audit.jsonl"
    lock: str = ""
    monitor: float = 15.0
    max_task_failures: int = 3


class _Events(msgspec.Struct, forbid_unknown_fields=True):
    enabled: bool = True
    refresh: float = 60.0
    debounce: float = 0.25


class _File(msgspec.Struct, forbid_unknown_fields=True):
    refresh: float = 5.0
    timeout: float = 5.0
    max_response_mb: float = 8.0
    slow_poll_ms: float = 500.0
    sites: dict[str, _Site] = {}
    buckets: _Buckets | None = None
    prometheus: _Prometheus | None = None
    deploy: _Deploy = msgspec.field(default_factory=_Deploy)
    health: _Health = msgspec.field(default_factory=_Health)
    events: _Events = msgspec.field(default_factory=_Events)
    ssh: _Ssh = msgspec.field(default_factory=_Ssh)


# ---------------------------------------------------------------------------
# The typed model the rest of dtmon uses.
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TlsConfig:
    """Client certificates for a tcp:// Docker endpoint."""

    ca: Path | None = None  #: CA bundle that signed the engine's certificate
    cert: Path | None = None  #: client certificate
    key: Path | None = None  #: client key
    verify: bool = True  #: check the engine's certificate against `ca`


@dataclass(frozen=True)
class SiteConfig:
    """One site: a Swarm reached through its manager."""

    name: str  #: the site's name, e.g. "chime"
    docker: str  #: unix://, tcp://host:port or ssh://user@host of the (first) manager
    stacks: dict[str, Path] = field(default_factory=dict)  #: stack name -> compose file
    tls: TlsConfig | None = None  #: client TLS for tcp:// endpoints
    compose_services: dict[str, dict[str, int]] = field(default_factory=dict)
    """stack -> {service short name: desired replicas} as the compose file declares."""
    managers: tuple[str, ...] = ()  #: every manager URL in the order they are asked; () means just `docker`
    socket: str = DEFAULT_REMOTE_SOCKET  #: the Docker socket's path on ssh:// hosts
    ssh_config: Path | None = None  #: `[ssh] config`, passed to ssh as -F (None: ssh's own)

    @property
    def endpoints(self) -> tuple[str, ...]:
        """The manager URLs to ask, in order."""
        return self.managers or (self.docker,)


@dataclass(frozen=True)
class BucketsConfig:
    """The workflow system's Buckets service."""

    url: str  #: base URL, e.g. http://frb-vsop.chime:8004 (the first of `urls`)
    include: tuple[str, ...] = ("datatrail-*",)  #: bucket name globs to watch
    consumers: dict[str, str] = field(default_factory=dict)  #: bucket glob -> "site/swarm_service"
    fallbacks: tuple[str, ...] = ()  #: more base URLs, tried in order when the ones before do not answer
    token_env: str | None = None  #: a variable holding the token, looked at before WORKFLOW_HTTP_TOKEN & co
    workspace: Path | None = None  #: the workflow workspace file the URLs came from (no [buckets] table)

    @property
    def urls(self) -> tuple[str, ...]:
        """Every base URL, in the order they are tried."""
        return (self.url, *self.fallbacks)


@dataclass(frozen=True)
class PrometheusConfig:
    """The Prometheus server holding Datatrail's metrics."""

    url: str  #: base URL, e.g. http://frb-vsop.chime:9090
    window: str = "24h"  #: window for rates and percent done; replaces $window in queries
    queries: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_QUERIES))  #: PromQL per quantity
    max_push_age: float = 900.0  #: seconds; an older push from metric_pusher (3 missed 5-minute pushes) is a problem


@dataclass(frozen=True)
class HealthConfig:
    """How services are judged beyond their replica counts."""

    crashloop_failures: int = 3  #: this many failed or rejected tasks within the window make a crash loop
    crashloop_window: float = 600.0  #: seconds; failures older than this are not counted
    error_max_age: float = 3600.0  #: seconds; a healthy service's older last error is dimmed, not shown as news


@dataclass(frozen=True)
class DeployConfig:
    """Guarded actions: whether they exist and the rules they follow."""

    allow: bool = False  #: actions are offered only when true (or --allow-actions)
    order: tuple[str, ...] = DEFAULT_ORDER  #: deploy order; removal is the reverse
    core: str = "datatrail"  #: the stack every other stack depends on
    announce: str = ""  #: webhook URL that receives a JSON POST before core downtime
    audit: Path = Path("~/.local/state/dtmon/audit.jsonl").expanduser()  #: JSON-lines audit log
    lock: Path | None = None  #: lock file; defaults to beside the audit log
    monitor: float = 15.0  #: seconds every new task must run with no failure before a wait step has converged
    max_task_failures: int = 3  #: failed tasks of the new spec that end a wait step early (the service keeps failing)


@dataclass(frozen=True)
class EventsConfig:
    """Live events: each site's Docker event stream, used as a "refresh now" hint."""

    enabled: bool = True  #: follow each site's event stream (the dashboard only; `status` polls once)
    refresh: float = 60.0  #: seconds between polls of a site whose stream is open (never less than `refresh`)
    debounce: float = 0.25  #: seconds a burst of events is gathered before the site is polled


@dataclass(frozen=True)
class Config:
    """Everything dtmon was told, after validation."""

    path: Path | None  #: the file this came from (None for built-in worlds)
    refresh: float = 5.0  #: seconds between polls of each site
    timeout: float = 5.0  #: seconds before a site's poll is given up
    sites: tuple[SiteConfig, ...] = ()  #: in file order
    buckets: BucketsConfig | None = None
    prometheus: PrometheusConfig | None = None
    deploy: DeployConfig = field(default_factory=DeployConfig)
    health: HealthConfig = field(default_factory=HealthConfig)
    events: EventsConfig = field(default_factory=EventsConfig)
    ssh_config: Path | None = None  #: `[ssh] config`: ssh's -F file for every ssh:// manager (None: ssh's own)
    max_response_mb: float = 8.0  #: the largest answer read from any server (MB); a larger one is refused
    slow_poll_ms: float = 500.0  #: a site's chip shows its poll latency only from this many ms on

    @property
    def max_bytes(self) -> int:
        """`max_response_mb` in bytes."""
        return int(self.max_response_mb * 1024 * 1024)

    def site(self, name: str) -> SiteConfig:
        """The site called `name`, or KeyError."""
        for site in self.sites:
            if site.name == name:
                return site
        raise KeyError(name)


# ---------------------------------------------------------------------------
# Locating and loading.
# ---------------------------------------------------------------------------


def default_path() -> Path:
    """Where dtmon looks when neither --config nor $DTMON_CONFIG is given."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "dtmon" / "config.toml"


def locate(explicit: str | None) -> Path | None:
    """The config path to use: --config, else $DTMON_CONFIG, else the XDG file if it exists."""
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get("DTMON_CONFIG")
    if env:
        return Path(env).expanduser()
    path = default_path()
    return path if path.exists() else None


_TYPE_WORDS = {
    "str": "a string",
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "object": "a table",
    "array": "an array",
    "null": "nothing",
}


def _words(type_name: str) -> str:
    parts = [p.strip().strip("`") for p in type_name.split("|")]
    return " or ".join(_TYPE_WORDS.get(p, p) for p in parts)


#: Value types of the file's tables keyed by user-chosen names ("*" stands for any key).
_KEYED_TABLES: dict[str, type] = {
    "sites": _Site,
    "sites.*.stacks": str,
    "buckets.consumers": str,
    "prometheus.queries": str,
}


def _converts(value: object, kind: type) -> bool:
    try:
        msgspec.convert(value, kind, strict=True)
    except msgspec.ValidationError:
        return False
    return True


def _name_keys(where: str, data: object) -> str:
    """Replace msgspec's `[...]` (a table key it does not name) with the key: the first entry that fails."""
    names: list[str] = []
    pattern: list[str] = []
    node = data
    for part in re.findall(r"\[\.\.\.\]|\[[^\]]*\]|[^.\[]+", where):
        if part == "[...]":
            kind = _KEYED_TABLES.get(".".join(pattern))
            bad = None
            if kind is not None and isinstance(node, dict):
                bad = next((k for k, v in node.items() if not _converts(v, kind)), None)
            names.append(str(bad) if bad is not None else "*")
            pattern.append("*")
            node = node.get(bad) if isinstance(node, dict) and bad is not None else None
        elif part.startswith("["):
            names[-1:] = [(names[-1] if names else "") + part]
            node = None
        else:
            names.append(part)
            pattern.append(part)
            node = node.get(part) if isinstance(node, dict) else None
    return ".".join(names)


def _explain(path: Path, err: msgspec.ValidationError, data: object = None) -> ConfigError:
    text = str(err)
    where = ""
    match = re.search(r" - at `\$(.*)`$", text)
    if match:
        text = text[: match.start()]
        where = _name_keys(match.group(1).lstrip("."), data)
        where = re.sub(r"\[['\"]?([^'\"\]]+)['\"]?\]", r".\1", where).lstrip(".")
    if m := re.match(r"Expected `(.+)`, got `(.+)`", text):
        detail = f"expected {_words(m.group(1))}, got {_words(m.group(2))}"
    elif m := re.match(r"Object contains unknown field `(.+)`", text):
        key = m.group(1)
        where = f"{where}.{key}" if where else key
        detail = "unknown key"
    elif m := re.match(r"Object missing required field `(.+)`", text):
        key = m.group(1)
        where = f"{where}.{key}" if where else key
        detail = "required key is missing"
    else:
        detail = text
    return ConfigError(f"{path}: {where or '(top level)'}: {detail}")


def _expand(config: Path, key: str, value: str | None) -> Path | None:
    """A path from the file (None when unset): `$VARS` and `~` expanded, relative ones taken from the config's folder."""
    if value is None:
        return None
    try:
        return values.path(value, config.parent)
    except ValueError as exc:
        raise ConfigError(f"{config}: {key}: {exc}") from None


def _existing_file(config: Path, key: str, file: Path, what: str, follow: bool = True) -> None:
    """Refuse a file that is missing, unreachable or not a regular file (a FIFO, a device, a directory; with
    `follow` false, a symlink)."""
    try:
        info = os.stat(file, follow_symlinks=follow)
    except FileNotFoundError:
        raise ConfigError(f"{config}: {key}: {what} {file} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"{config}: {key}: {what} {file}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"{config}: {key}: {what} {file} is {values.file_kind(info.st_mode)}, expected a regular file")


def _name(config: Path, key: str, value: str) -> None:
    try:
        values.name(value)
    except ValueError as exc:
        raise ConfigError(f"{config}: {key}: {exc}") from None


def _url(config: Path, key: str, value: str, schemes: tuple[str, ...], **rules: object) -> str:
    """`value` checked by the one URL rule (config_values.url); ConfigError naming file and key."""
    try:
        return values.url(value, schemes, **rules)  # type: ignore[arg-type]
    except ValueError as exc:
        raise ConfigError(f"{config}: {key}: {exc}") from None


#: What a site's `docker` may be: the README's three forms (a Docker engine is never spoken to over http://).
DOCKER_SCHEMES = ("unix", "tcp", "ssh")
HTTP_SCHEMES = ("http", "https")

def _managers(path: Path, key: str, value: str | list[str]) -> tuple[str, ...]:
    """The manager URLs of `sites.NAME.docker`: one URL or a non-empty list of distinct ones."""
    urls = [value] if isinstance(value, str) else list(value)
    if not urls:
        raise ConfigError(f"{path}: {key}: expected a manager URL or a list of them, got an empty list")
    for index, url in enumerate(urls):
        _url(path, key if isinstance(value, str) else f"{key}[{index}]", url, DOCKER_SCHEMES, port_required=("tcp",))
    if len(set(urls)) != len(urls):
        twice = next(url for url in urls if urls.count(url) > 1)
        raise ConfigError(f"{path}: {key}: {twice!r} is listed twice")
    return tuple(urls)


#: The files of a DOCKER_CERT_PATH-style directory, as the docker CLI names them.
CERT_DIR_FILES = {"ca": "ca.pem", "cert": "cert.pem", "key": "key.pem"}


def _tls(path: Path, key: str, value: _Tls | str | None) -> TlsConfig | None:
    """`tls = { ca, cert, key, verify }`, or `tls = "DIR"` holding ca.pem, cert.pem and key.pem."""
    if value is None:
        return None
    if isinstance(value, str):
        directory = _expand(path, key, value)
        if directory is None or not directory.is_dir():
            raise ConfigError(f"{path}: {key}: expected a directory holding ca.pem, cert.pem and key.pem, got {value!r}")
        files = {part: directory / name for part, name in CERT_DIR_FILES.items()}
        missing = [name for part, name in CERT_DIR_FILES.items() if not os.path.lexists(files[part])]
        if missing:
            raise ConfigError(f"{path}: {key}: {directory} has no {', '.join(missing)} (a DOCKER_CERT_PATH directory has all three)")
        for part, name in CERT_DIR_FILES.items():
            _existing_file(path, key, files[part], "file")
        return TlsConfig(files["ca"], files["cert"], files["key"], True)
    tls = TlsConfig(
        _expand(path, f"{key}.ca", value.ca),
        _expand(path, f"{key}.cert", value.cert),
        _expand(path, f"{key}.key", value.key),
        value.verify,
    )
    for part in ("ca", "cert", "key"):
        file = getattr(tls, part)
        if file is not None:
            _existing_file(path, f"{key}.{part}", file, "file")
    if (tls.cert is None) != (tls.key is None):
        raise ConfigError(f"{path}: {key}: expected both `cert` and `key`, or neither")
    return tls


#: Most replicas a compose file may ask for (as many as dtmon believes of an engine).
MAX_REPLICAS = 1_000_000


def parse_compose(path: Path) -> dict[str, int]:
    """Service short names -> desired replicas declared in a compose file; raises ValueError."""
    import yaml  # local: only config loading needs YAML

    try:
        text = values.read_capped(path, values.MAX_COMPOSE_BYTES).decode("utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ValueError("not UTF-8 text") from None
    try:
        data = yaml.safe_load(text)
    except RecursionError:
        raise ValueError("not usable YAML: nested too deeply") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ValueError(f"not valid YAML{where}: {problem}") from None
    if not isinstance(data, dict) or not isinstance(data.get("services"), dict) or not data["services"]:
        raise ValueError("expected a compose file with a non-empty `services` mapping")
    services: dict[str, int] = {}
    for name, spec in data["services"].items():
        try:
            values.name(str(name))  # a compose service name, as the swarm service's is <stack>_<name>
        except ValueError as exc:
            raise ValueError(f"services: {exc}") from None
        spec = spec if isinstance(spec, dict) else {}
        deploy = spec.get("deploy") if isinstance(spec.get("deploy"), dict) else {}
        if deploy.get("mode") == "global":
            replicas = 1
        else:
            replicas = deploy.get("replicas", 1)
            if isinstance(replicas, str) and replicas.strip().isascii() and replicas.strip().isdigit():
                replicas = int(replicas) if len(replicas.strip()) <= 9 else -1  # what interpolation yields, e.g. "2"
            elif isinstance(replicas, str) and "$" in replicas:  # ${N}: known only to `docker stack deploy`
                replicas = 1
            if isinstance(replicas, bool) or not isinstance(replicas, int) or not 0 <= replicas <= MAX_REPLICAS:
                shown = values.shown(deploy.get("replicas"))
                raise ValueError(f"services.{name}.deploy.replicas: expected a whole number of replicas "
                                 f"(0 to {MAX_REPLICAS}), got {shown}")
        services[str(name)] = replicas
    return services


def load(path: Path) -> Config:
    """Read, validate and type the config at `path`; raises ConfigError naming what is wrong."""
    try:
        raw_bytes = values.read_capped(path, values.MAX_CONFIG_BYTES)  # a FIFO or /dev/zero is refused, not read
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    try:
        data = tomllib.loads(raw_bytes.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: TOML syntax error: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{path}: TOML nested too deeply") from None
    except ValueError as exc:  # tomllib's int(): a number of more than 4,300 digits
        raise ConfigError(f"{path}: TOML value not usable: {str(exc).split(';')[0]}") from None
    try:
        # strict: a string is not a number (refresh = "5"); an integer still fills a float field.
        raw = msgspec.convert(data, _File, strict=True)
    except msgspec.ValidationError as exc:
        raise _explain(path, exc, data) from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply") from None
    return _build(path, raw)


def _seconds(path: Path, key: str, value: float, bounds: tuple[float, float]) -> float:
    # NaN, infinities and 1e10 (which overflows thread and socket timeouts later) are refused here.
    try:
        return values.seconds(value, bounds)
    except ValueError as exc:
        raise ConfigError(f"{path}: {key}: {exc}") from None


def _build(path: Path, raw: _File) -> Config:
    refresh = _seconds(path, "refresh", raw.refresh, values.REFRESH_RANGE)
    timeout = _seconds(path, "timeout", raw.timeout, values.TIMEOUT_RANGE)
    max_response_mb = raw.max_response_mb
    if not math.isfinite(max_response_mb) or not 0 < max_response_mb <= 1024:
        raise ConfigError(f"{path}: max_response_mb: expected a size in MB above 0 and at most 1024, got {max_response_mb}")
    slow_poll_ms = raw.slow_poll_ms
    if not math.isfinite(slow_poll_ms) or not 0 <= slow_poll_ms <= 600_000:
        raise ConfigError(f"{path}: slow_poll_ms: expected milliseconds from 0 to 600000, got {slow_poll_ms}")
    sites = []
    ssh_config = _expand(path, "ssh.config", raw.ssh.config)
    if ssh_config is not None:
        _existing_file(path, "ssh.config", ssh_config, "file")
    for name, site in raw.sites.items():
        key = f"sites.{name}"
        _name(path, "sites", name)
        managers = _managers(path, f"{key}.docker", site.docker)
        stacks: dict[str, Path] = {}
        compose: dict[str, dict[str, int]] = {}
        for stack, file in site.stacks.items():
            _name(path, f"{key}.stacks", stack)
            compose_path = _expand(path, f"{key}.stacks.{stack}", file)
            assert compose_path is not None
            _existing_file(path, f"{key}.stacks.{stack}", compose_path, "compose file")
            try:
                compose[stack] = parse_compose(compose_path)
            except ValueError as exc:
                raise ConfigError(f"{path}: {key}.stacks.{stack}: {compose_path}: {exc}") from None
            stacks[stack] = compose_path
        tls = _tls(path, f"{key}.tls", site.tls)
        socket = DEFAULT_REMOTE_SOCKET
        if site.socket is not None:
            if not any(url.startswith("ssh://") for url in managers):
                raise ConfigError(f"{path}: {key}.socket: only ssh:// managers have a remote socket; {key}.docker has none")
            if not site.socket.startswith("/") or any(ch.isspace() or ord(ch) < 32 for ch in site.socket):
                raise ConfigError(f"{path}: {key}.socket: expected an absolute path without spaces, got {site.socket!r}")
            socket = site.socket
        sites.append(
            SiteConfig(name, managers[0], stacks, tls, compose, managers if len(managers) > 1 else (), socket, ssh_config)
        )
    buckets = _buckets(path, raw.buckets) if raw.buckets is not None else _workspace_buckets()
    prometheus = None
    if raw.prometheus is not None:
        _url(path, "prometheus.url", raw.prometheus.url, HTTP_SCHEMES)
        unknown = sorted(set(raw.prometheus.queries) - set(DEFAULT_QUERIES))
        if unknown:
            raise ConfigError(
                f"{path}: prometheus.queries.{unknown[0]}: unknown query; expected one of {', '.join(DEFAULT_QUERIES)}"
            )
        try:  # rates divide by the window; a 5,000-digit one is no number of seconds
            values.window(raw.prometheus.window)
        except ValueError as exc:
            raise ConfigError(f"{path}: prometheus.window: {exc}") from None
        prometheus = PrometheusConfig(
            raw.prometheus.url.rstrip("/"), raw.prometheus.window, {**DEFAULT_QUERIES, **raw.prometheus.queries},
            _seconds(path, "prometheus.max_push_age", raw.prometheus.max_push_age, values.PUSH_AGE_RANGE),
        )
    d = raw.deploy
    for stack in d.order:
        _name(path, "deploy.order", stack)
    if d.core not in d.order:
        raise ConfigError(f"{path}: deploy.core: expected one of deploy.order {d.order}, got {d.core!r}")
    if len(set(d.order)) != len(d.order):
        raise ConfigError(f"{path}: deploy.order: expected each stack once, got {d.order}")
    if d.announce:
        _url(path, "deploy.announce", d.announce, HTTP_SCHEMES, query=True)
    audit = _expand(path, "deploy.audit", d.audit)
    assert audit is not None
    lock = _expand(path, "deploy.lock", d.lock) if d.lock else None  # "" is the default: beside the audit log
    for key, file in (("deploy.audit", audit), ("deploy.lock", lock)):
        if file is not None and os.path.lexists(file):  # /dev/full would be read without end
            _existing_file(path, key, file, "file", follow=False)  # written with O_NOFOLLOW: never a symlink
    monitor = _seconds(path, "deploy.monitor", d.monitor, values.MONITOR_RANGE)
    if not 1 <= d.max_task_failures <= 1000:
        raise ConfigError(f"{path}: deploy.max_task_failures: expected a count from 1 to 1000, "
                          f"got {values.shown(d.max_task_failures)}")
    deploy = DeployConfig(d.allow, tuple(d.order), d.core, d.announce, audit, lock, monitor, d.max_task_failures)
    h = raw.health
    low, high = values.CRASHLOOP_FAILURES_RANGE
    if not low <= h.crashloop_failures <= high:
        raise ConfigError(f"{path}: health.crashloop_failures: expected a whole number of failures from {low} to {high}, "
                          f"got {values.shown(h.crashloop_failures)}")
    health = HealthConfig(h.crashloop_failures,
                          _seconds(path, "health.crashloop_window", h.crashloop_window, values.CRASHLOOP_WINDOW_RANGE),
                          _seconds(path, "health.error_max_age", h.error_max_age, values.ERROR_AGE_RANGE))
    if not (sites or buckets or prometheus):  # else `status` would call nothing "all healthy"
        raise ConfigError(f"{path}: (top level): nothing to watch: expected at least one [sites.NAME] table"
                          " (or [buckets] / [prometheus])")
    events = EventsConfig(
        raw.events.enabled,
        _seconds(path, "events.refresh", raw.events.refresh, values.REFRESH_RANGE),
        _seconds(path, "events.debounce", raw.events.debounce, values.DEBOUNCE_RANGE),
    )
    return Config(path, refresh, timeout, tuple(sites), buckets, prometheus, deploy, health, events, ssh_config,
                  float(max_response_mb), float(slow_poll_ms))


def _buckets(path: Path, raw: _Buckets) -> BucketsConfig:
    urls = [raw.url] if isinstance(raw.url, str) else list(raw.url)
    if not urls:
        raise ConfigError(f"{path}: buckets.url: expected a URL or a non-empty list of URLs, got []")
    for url in urls:
        _url(path, "buckets.url", url, HTTP_SCHEMES)
    for glob, consumer in raw.consumers.items():
        if consumer.count("/") != 1 or not all(consumer.split("/")):
            raise ConfigError(
                f'{path}: buckets.consumers."{glob}": expected "site/stack_service" (globs allowed), got {consumer!r}'
            )
    if raw.token_env is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", raw.token_env):
        raise ConfigError(f"{path}: buckets.token_env: expected the name of an environment variable, got {raw.token_env!r}")
    urls = [url.rstrip("/") for url in urls]
    return BucketsConfig(urls[0], tuple(raw.include), dict(raw.consumers), tuple(urls[1:]), raw.token_env)


def _workspace_buckets() -> BucketsConfig | None:
    """With no [buckets] table: the Buckets URLs of the operator's workflow workspace, when it has any.

    A workspace file that cannot be read is not dtmon's config: it is ignored here, and `dtmon config
    check` says why.
    """
    from .workflow_env import workspace_buckets, workspace_path

    try:
        urls = workspace_buckets()
    except ValueError:
        return None
    if not urls:
        return None
    return BucketsConfig(urls[0], fallbacks=urls[1:], workspace=workspace_path())
