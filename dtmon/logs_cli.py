"""`dtmon logs SITE SERVICE`: a service's logs, like `docker service logs`, every line cleaned. Read-only."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any, TextIO

from .config import Config

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def _tail(text: str) -> int:
    from .collectors.logs import TAIL_RANGE
    from .config_values import shown

    low, high = TAIL_RANGE
    if text == "all":
        raise argparse.ArgumentTypeError(f"`all` is not taken: logs are read bounded; give a number up to {high}")
    if not text.isdigit() or len(text) > 7 or not low <= int(text) <= high:
        raise argparse.ArgumentTypeError(f"expected a whole number from {low} to {high}, got {shown(text)}")
    return int(text)


def _since(text: str) -> str:
    from .collectors.logs import now_utc, parse_since

    try:
        parse_since(text, now_utc())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{exc} (or an RFC 3339 time)")
    return text


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register `logs` on dtmon's subcommand parser."""
    from .collectors.logs import DEFAULT_TAIL

    logs = sub.add_parser(
        "logs",
        help="a service's logs, like `docker service logs` (read-only)",
        description="Print the logs of one service at one site, like `docker service logs`: each line with the "
        "task and node it came from (`name.slot.task@node | text`), cleaned of every escape sequence but colours. "
        "Read-only: allowed in read-only mode. Exit 0, 1 when the service or site cannot be read, 2 on usage "
        "errors, 130 on Ctrl-C.",
    )
    logs.add_argument("site")
    logs.add_argument("service", help="swarm name (stack_service) or the short name when unique")
    logs.add_argument("--tail", type=_tail, default=DEFAULT_TAIL, metavar="N",
                      help=f"lines from the end of each task's log ({DEFAULT_TAIL})")
    logs.add_argument("--since", type=_since, metavar="DURATION",
                      help="only lines newer than this: 30s, 10m, 2h, 1h30m, or an RFC 3339 time")
    logs.add_argument("--timestamps", "-t", action="store_true", help="show each line's time (RFC 3339, ns)")
    logs.add_argument("--follow", "-f", action="store_true", help="keep printing new lines until Ctrl-C")
    logs.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS, help="config file (TOML)")


def find_service(client: Any, site: Any, wanted: str) -> tuple[str | None, str]:
    """(service id, its swarm name) of `wanted` at a site: its swarm name, or a short name unique among the
    site's stacks; (None, why not) otherwise."""
    from . import sanitize
    from .collectors.swarm import STACK_LABEL, _dict

    services = client.services(filters={"label": STACK_LABEL})
    found: dict[str, list[str]] = {}
    for svc in services if isinstance(services, list) else []:
        svc = _dict(svc)
        name = _dict(svc.get("Spec")).get("Name")
        if isinstance(name, str) and isinstance(svc.get("ID"), str):
            found.setdefault(name, []).append(svc["ID"])
    names = [wanted] if wanted in found else [f"{stack}_{wanted}" for stack in site.stacks if f"{stack}_{wanted}" in found]
    shown = sanitize.name(wanted)
    if not names:
        return None, f"no service {shown} at {site.name} (give its swarm name, stack_service, or its short name)"
    if len(names) > 1:
        return None, f"{shown} is ambiguous at {site.name}: {', '.join(names)}"
    ids = found[names[0]]
    if len(ids) > 1:
        return None, f"{len(ids)} services at {site.name} are named {sanitize.name(names[0])}: refusing to guess"
    return ids[0], names[0]


class Deadline(BaseException):
    """A step of `dtmon logs` ran past its deadline (a trickling or silent engine). A BaseException: docker-py
    wraps every Exception of its version check into its own."""


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Raise Deadline in the code inside once `seconds` have passed, even inside a blocking read.

    docker-py has only a per-read socket timeout, which an engine answering one byte every half second never
    trips; an interval timer's signal interrupts the read wherever it is. Main thread only (signals are
    delivered there); elsewhere it does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise Deadline(f"timed out after {seconds:g}s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run(config: Config, args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Print the logs; returns the exit code. Ctrl-C ends a follow (130) and a closed pipe ends it quietly (0)."""
    out = out or sys.stdout
    try:
        return _run(config, args, out)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `dtmon logs … | head`: the reader has what it wanted
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, out.fileno())  # so the interpreter's last flush at exit does not fail again
        except (OSError, ValueError, AttributeError):
            pass
        return EXIT_OK


def _run(config: Config, args: argparse.Namespace, out: TextIO) -> int:
    from . import sanitize
    from .collectors.logs import format_entry, now_utc, parse_since, read_logs, task_names
    from .collectors.swarm import SwarmCollector, describe_error

    site = next((s for s in config.sites if s.name == args.site), None)
    if site is None:
        known = ", ".join(s.name for s in config.sites) or "none"
        print(f"dtmon: no site {sanitize.name(args.site)} in {config.path} (sites: {known})", file=sys.stderr)
        return EXIT_USAGE
    since = parse_since(args.since, now_utc()) if args.since else None
    collector = SwarmCollector(site, config.timeout, config.health)
    colour = out.isatty() and "NO_COLOR" not in os.environ
    try:
        try:
            with deadline(config.timeout):  # the lookups, whole: per-read timeouts never fire on a trickle
                client = collector.client(config.timeout)
                service_id, name = find_service(client, site, args.service)
                if service_id is None:
                    print(f"dtmon: {name}", file=sys.stderr)
                    return EXIT_FAILED
                names = task_names(client, service_id)
            if args.follow:
                client.timeout = None  # a quiet service sends nothing for a long time; Ctrl-C ends the wait
            # Without --follow the read is bounded like the detail screen's (timeout, whole); a follow runs until Ctrl-C.
            with deadline(config.timeout) if not args.follow else contextlib.nullcontext():
                for entry in read_logs(client, service_id, tail=args.tail, since=since, follow=args.follow):
                    if entry.task_id and entry.task_id not in names.tasks and args.follow:
                        client.timeout = config.timeout
                        with deadline(config.timeout):
                            names = task_names(client, service_id)  # a new task (a restart, a crash loop's next try)
                        client.timeout = None
                    out.write(format_entry(entry, names, args.timestamps, colour) + "\n")
                    if args.follow:
                        out.flush()
            out.flush()
        except (KeyboardInterrupt, BrokenPipeError):
            raise
        except Deadline as exc:
            out.flush()
            print(f"dtmon: logs of {sanitize.name(args.service)} at {site.name}: {exc}", file=sys.stderr)
            return EXIT_FAILED
        except Exception as exc:  # noqa: BLE001 - one line naming the site, never a traceback
            print(f"dtmon: logs of {sanitize.name(args.service)} at {site.name}: {describe_error(exc)}", file=sys.stderr)
            return EXIT_FAILED
    finally:
        collector.close()
    return EXIT_OK
