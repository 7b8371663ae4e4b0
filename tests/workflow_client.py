"""Drive the official Buckets client (`workflow-core`) against a Buckets service; prints one JSON line.

Run with the python of the separate workflow-core venv (it needs rich<14, dtmon's textual needs rich>=14.2),
never imported by the tests themselves::

    python workflow_client.py URL deposit PIPELINE COUNT [--site SITE] [--priority N]
    python workflow_client.py URL withdraw PIPELINE COUNT [--finish success|failure|running]
    python workflow_client.py URL status PIPELINE
    python workflow_client.py URL delete PIPELINE [--status queued]
    python workflow_client.py URL pipelines

It writes a throwaway workflow workspace naming URL as the buckets backend, under a private HOME; URL may
be several, separated by commas (the client uses the first that answers `HEAD /version`). The token, if
any, comes from the environment as the client reads it (WORKFLOW_HTTP_TOKEN & co). `which` prints the
base URL the client chose.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path


def _workspace(url: str) -> None:
    """A private HOME whose workflow workspace points the buckets backend at `url`."""
    home = Path(tempfile.mkdtemp(prefix="wfclient-"))
    atexit.register(shutil.rmtree, home, ignore_errors=True)
    os.environ["HOME"] = str(home)
    for key in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        os.environ.pop(key, None)
    os.environ["NO_PROXY"] = os.environ["no_proxy"] = "*"
    config = home / ".config" / "workflow"
    config.mkdir(parents=True)
    urls = "".join(f"\n      - {u}" for u in url.split(","))
    (config / "workspace.yml").write_text(
        f"workspace: dtmon-tests\nsites:\n  - chime\n  - kko\n  - gbo\n  - hco\nhttp:\n  baseurls:\n    buckets:{urls}\n"
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    sub = parser.add_subparsers(dest="action", required=True)
    deposit = sub.add_parser("deposit")
    deposit.add_argument("pipeline")
    deposit.add_argument("count", type=int)
    deposit.add_argument("--site", default="chime")
    deposit.add_argument("--priority", type=int, default=3)
    withdraw = sub.add_parser("withdraw")
    withdraw.add_argument("pipeline")
    withdraw.add_argument("count", type=int)
    withdraw.add_argument("--finish", choices=["success", "failure", "running"], default="success")
    delete = sub.add_parser("delete")
    delete.add_argument("pipeline")
    delete.add_argument("--status", default=None)
    status = sub.add_parser("status")
    status.add_argument("pipeline")
    sub.add_parser("pipelines")
    sub.add_parser("which")
    args = parser.parse_args(argv)
    _workspace(args.url)

    import warnings

    warnings.simplefilter("ignore")
    from workflow.definitions.work import Work
    from workflow.http.context import HTTPContext

    http = HTTPContext(backends=["buckets"])
    if http.buckets is None:
        print(json.dumps({"error": f"workflow-core could not validate {args.url} (HEAD /version)"}))
        return 1
    if args.action == "deposit":
        ids: list[str] = []
        for _ in range(args.count):
            work = Work(pipeline=args.pipeline, site=args.site, user="dtmon-tests", priority=args.priority)
            ids.extend(work.deposit(return_ids=True, http=http))
        print(json.dumps({"deposited": ids}))
    elif args.action == "withdraw":
        withdrawn: list[str] = []
        for _ in range(args.count):
            work = Work.withdraw(pipeline=args.pipeline, http=http)
            if work is None:
                break
            if args.finish != "running":
                work.status = args.finish
                work.update()
            withdrawn.append(str(work.id))
        print(json.dumps({"withdrawn": withdrawn}))
    elif args.action == "delete":
        print(json.dumps({"deleted": http.buckets.delete_many(args.pipeline, status=args.status, force=True)}))
    elif args.action == "which":
        print(json.dumps({"baseurl": http.buckets.baseurl, "token_sent": "x-access-token" in http.buckets.session.headers}))
    elif args.action == "status":
        print(json.dumps(http.buckets.status(pipeline=args.pipeline)))
    else:
        print(json.dumps(http.buckets.pipelines()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
