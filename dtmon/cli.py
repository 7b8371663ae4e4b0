"""dtmon's command line. Subcommands import only what they need (status never imports Textual)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import __version__
from .config import DEFAULT_QUERIES, Config, ConfigError, default_path, load, locate
from .redact import redact_url, webhook_url

EXIT_OK, EXIT_PROBLEM, EXIT_USAGE = 0, 1, 2

NO_CONFIG = """\
dtmon: no configuration found.

dtmon looks for --config PATH, then $DTMON_CONFIG, then {default}.
Write one like this (see examples/config.toml in the dtmon repository):

    refresh = 5.0
    timeout = 5.0

    [sites.chime]
    docker = "unix:///var/run/docker.sock"
    [sites.chime.stacks]
    datatrail = "~/datatrail/stacks/server-compose.yaml"

Or look around a simulated Datatrail world first:

    dtmon demo
"""


#: The notice `dtmon --or-demo` shows in the app when it opens the demo world for want of a config.
NO_CONFIG_DEMO = (
    "No dtmon config found (--config, $DTMON_CONFIG or {default}), so this is the demo world: simulated sites, "
    "nothing real. The README's Configuration section says how to write one."
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # usage errors exit 2 with one line, as config errors do
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="dtmon",
        description="Live dashboard of Datatrail's Docker Swarm stacks at every site. "
        "Without a subcommand, opens the dashboard.",
        epilog="Config: --config PATH, else $DTMON_CONFIG, else $XDG_CONFIG_HOME/dtmon/config.toml. "
        "Buckets token: $WORKFLOW_HTTP_TOKEN (else WORKFLOW_TOKEN, GITHUB_TOKEN, GITHUB_PAT), as for workflow-core. "
        "Exit codes: 0 healthy, 1 a problem was found, 2 configuration or usage error; the dashboard ended by "
        "SIGTERM or SIGHUP restores the terminal and exits 143 or 129.",
    )
    parser.add_argument("--config", metavar="PATH", help="config file (TOML)")
    parser.add_argument("--version", action="version", version=f"dtmon {__version__}")
    parser.add_argument(
        "--allow-actions", action="store_true", help="enable restarts and redeploys for this run (else [deploy] allow)"
    )
    parser.add_argument(
        "--or-demo", action="store_true",
        help="when no config is found, open the demo world instead, saying so in the app (what `make run` does)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    status = sub.add_parser(
        "status",
        help="poll every site once, print the result, exit 0 when healthy, 1 on any problem",
        description="Poll every site once and print what was found. "
        "Exit 0 when every service is running or stopped (a crash loop is a problem even while its replicas run) "
        "and every site answered, 1 otherwise, 2 on a config error.",
    )
    status.add_argument("--json", action="store_true", help="print JSON for scripts instead of a table")
    status.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS, help="config file (TOML)")

    demo = sub.add_parser(
        "demo",
        help="open the dashboard on a built-in simulated Datatrail world",
        description="Start a simulated Datatrail world (Docker Engine API on local unix sockets) and open the "
        "dashboard on it. Nothing outside this machine is touched.",
    )
    demo.add_argument(
        "--serve",
        metavar="DIR",
        help="only run the simulated world, writing its config to DIR/config.toml, until interrupted",
    )

    config = sub.add_parser("config", help="configuration tools", description="Configuration tools.")
    config_sub = config.add_subparsers(dest="config_command", metavar="ACTION", parser_class=_Parser, required=True)
    check = config_sub.add_parser(
        "check",
        help="validate the config and print what was understood",
        description="Validate the config file and print what dtmon understood of it. Exit 0 when valid, 2 when not.",
    )
    check.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS, help="config file (TOML)")

    from .actions.cli import add_parsers as add_action_parsers  # restart, redeploy, plan, audit

    add_action_parsers(sub)
    from .logs_cli import add_parser as add_logs_parser

    add_logs_parser(sub)
    return parser


def _load(args: argparse.Namespace) -> Config | None:
    path = locate(args.config)
    if path is None:
        return None
    return load(path)


def describe(config: Config) -> str:
    """What `dtmon config check` prints: the config as understood."""
    events = config.events
    lines = [f"config: {config.path}", f"refresh: {config.refresh:g}s  timeout: {config.timeout:g}s  max answer: {config.max_response_mb:g} MB",
             f"events: followed; a site with its stream open is polled every {max(config.refresh, events.refresh):g}s"
             f" (debounce {events.debounce:g}s)" if events.enabled else "events: not followed",
             "sites:"]
    for site in config.sites:
        managers = ", then ".join(redact_url(url) for url in site.endpoints)
        remote = f"  (remote socket {site.socket})" if any(u.startswith("ssh://") for u in site.endpoints) else ""
        lines.append(f"  {site.name}: {managers}" + ("  (TLS)" if site.tls else "") + remote)
        for stack, file in site.stacks.items():
            services = ", ".join(site.compose_services.get(stack, {}))
            lines.append(f"    {stack}: {file}")
            lines.append(f"      services: {services}")
    if not config.sites:
        lines.append("  (none)")
    if any(u.startswith("ssh://") for site in config.sites for u in site.endpoints):
        lines.append(f"ssh: config {config.ssh_config or 'of ssh itself (~/.ssh/config)'}; strict host keys, no prompts")
    lines.extend(_describe_buckets(config))
    if config.prometheus:
        prom = config.prometheus
        lines.append(f"prometheus: {redact_url(prom.url)} window {prom.window}; a push older than {prom.max_push_age:g}s is a problem")
        for name, query in prom.queries.items():
            if query != DEFAULT_QUERIES.get(name):
                lines.append(f"  {name}: {query or '(off)'}")
    h = config.health
    lines.append(f"health: crash loop at {h.crashloop_failures} failures in {h.crashloop_window:g}s;"
                 f" a healthy service's last error is dimmed after {h.error_max_age:g}s")
    d = config.deploy
    lines.append(
        f"actions: {'allowed' if d.allow else 'read-only'}; order {' -> '.join(d.order)}; core {d.core}; audit {d.audit}; "
        f"converged after {d.monitor:g}s steady, failed after {d.max_task_failures} task failures"
    )
    if d.announce:
        lines.append(f"  announce: {webhook_url(d.announce)}")
    return "\n".join(lines)


def _describe_buckets(config: Config) -> list[str]:
    """The Buckets part of `config check`: URLs in the order tried, where they came from, the token's source."""
    from .workflow_env import find_token, workspace_buckets, workspace_path

    buckets = config.buckets
    if buckets is None:
        try:
            workspace_buckets()
        except ValueError as exc:  # why the workspace's URLs were not offered
            return [f"buckets: not configured; the workflow workspace was not used: {exc}"]
        return [f"buckets: not configured (no [buckets] table, and no Buckets URLs in {workspace_path()})"]
    lines = [f"buckets: {', then '.join(redact_url(url) for url in buckets.urls)} include {', '.join(buckets.include)}"]
    if buckets.workspace is not None:
        lines.append(f"  (offered by the workflow workspace {buckets.workspace}; a [buckets] table takes its place)")
    elif workspace_path().is_file():
        lines.append(f"  ([buckets] is used, not the workflow workspace {workspace_path()})")
    _token, note = find_token(buckets.token_env)
    lines.append(f"  token: {note}")
    lines.extend(f"  consumer: {glob} -> {who}" for glob, who in buckets.consumers.items())
    return lines


def cmd_status(config: Config, as_json: bool) -> int:
    from .collectors.poll import snapshot
    from .redact import config_secrets, scrub
    from .report import render_json, render_text
    from .sanitize import clean

    snap = snapshot(config)
    # The collectors cleaned what the servers said and masked their own URLs' passwords; this is the last line
    # of defence: no secret of the config (a server may echo one back), no control sequence.
    secrets = config_secrets(config)
    if as_json:
        print(scrub(render_json(snap), secrets))  # json.dumps escapes every control character (and all non-ASCII)
    else:
        print("\n".join(clean(scrub(line, secrets), 4000) for line in render_text(snap).split("\n")))
    return EXIT_OK if snap.healthy else EXIT_PROBLEM


def cmd_tui(config: Config) -> int:
    from .app import DtmonApp

    from .screens.actions import app_class  # the action keys exist only when actions are allowed
    from .signals import exit_status, run_app

    # SIGTERM or SIGHUP (a closed SSH session) end it as `q` does, the terminal restored: exit 143 or 129.
    app = app_class(DtmonApp, config)(config)
    return exit_status(run_app(app)) or app.return_code or EXIT_OK  # 1 when it died of an unhandled exception


def main(argv: list[str] | None = None) -> int:
    from . import crash

    sys.excepthook = crash.excepthook  # a bug prints a traceback without secrets or control sequences
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "demo":
        from .demo import run_demo

        return run_demo(serve_dir=Path(args.serve) if args.serve else None)
    try:
        config = _load(args)
    except ConfigError as exc:
        print(f"dtmon: config error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if config is None and args.or_demo and args.command is None:
        from .demo import run_demo

        return run_demo(serve_dir=None, notice=NO_CONFIG_DEMO.format(default=default_path()))
    if config is None:
        print(NO_CONFIG.format(default=default_path()), file=sys.stderr)
        return EXIT_USAGE
    from .redact import config_secrets

    crash.SECRETS[:] = config_secrets(config)
    if getattr(args, "allow_actions", False):  # --allow-actions enables actions for this run only
        from dataclasses import replace

        config = replace(config, deploy=replace(config.deploy, allow=True))
    if args.command == "config":
        print(describe(config))
        return EXIT_OK
    if args.command in ("restart", "scale", "rollback", "redeploy", "plan", "audit"):
        from .actions.cli import run as run_action

        return run_action(args.command, config, args)
    if args.command == "status":
        return cmd_status(config, args.json)
    if args.command == "logs":  # read-only: allowed whatever [deploy] allow says
        from .logs_cli import run as run_logs

        return run_logs(config, args)
    return cmd_tui(config)


if __name__ == "__main__":
    sys.exit(main())
