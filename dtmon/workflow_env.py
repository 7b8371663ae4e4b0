"""What dtmon shares with the workflow system's own client (`workflow-core`): its token and its workspace file.

Read in `workflow/http/client.py` and `workflow/__init__.py` of CHIMEFRB/workflow, and measured with
workflow-core 1.12.3: the token comes from the first of `TOKEN_VARS` that is *set* (a set but empty one
means no token, and the names match in any letter case), and is sent as the header `x-access-token`;
the workspace file `~/.config/workflow/workspace.yml` lists each backend's base URLs under
`http.baseurls`, a string or a list tried in order.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

#: The variables the official client reads its token from, first set one wins.
TOKEN_VARS = ("WORKFLOW_HTTP_TOKEN", "WORKFLOW_TOKEN", "GITHUB_TOKEN", "GITHUB_PAT")

#: The header that carries it.
TOKEN_HEADER = "x-access-token"


@dataclass(frozen=True)
class Token:
    """A token and the variable it came from; its repr never shows the value."""

    variable: str  #: the environment variable it was read from
    value: str  #: the secret itself: sent, never shown

    def __repr__(self) -> str:
        return f"Token(variable={self.variable!r}, value=<hidden>)"

    __str__ = __repr__


def _lookup(name: str, environ: Mapping[str, str]) -> tuple[str, str] | None:
    """(name as set, value) of an environment variable matched in any letter case, exact spelling first."""
    if name in environ:
        return name, environ[name]
    folded = name.lower()
    for key, value in environ.items():
        if key.lower() == folded:
            return key, value
    return None


def find_token(token_env: str | None = None, environ: Mapping[str, str] | None = None) -> tuple[Token | None, str]:
    """The token to send and a sentence saying where it comes from (never the token itself).

    `token_env` (from `[buckets] token_env`) is looked at first; then `TOKEN_VARS`, in the official
    client's order. A variable that is set but empty ends the search with no token, as it does there.
    """
    environ = os.environ if environ is None else environ
    names = ([token_env] if token_env else []) + [n for n in TOKEN_VARS if n != token_env]
    for name in names:
        found = _lookup(name, environ)
        if found is None:
            continue
        variable, value = found
        if not value.strip():
            return None, f"{variable} is set but empty: no token is sent"
        return Token(variable, value.strip()), f"token from ${variable}"
    return None, f"no token (none of {', '.join(names)} is set)"


def workspace_path() -> Path:
    """Where the official client keeps the active workspace (its home, not $XDG_CONFIG_HOME)."""
    return Path.home() / ".config" / "workflow" / "workspace.yml"


def workspace_buckets(path: Path | None = None) -> tuple[str, ...]:
    """The Buckets base URLs the workspace file lists, in order; () when the file does not exist.

    Raises ValueError (naming the file and what is wrong) when it exists but cannot be used.
    """
    path = path or workspace_path()
    if not path.is_file():
        return ()
    import yaml  # local: only needed when the file is there

    from . import config_values

    try:
        data = yaml.safe_load(config_values.read_capped(path, config_values.MAX_CONFIG_BYTES).decode("utf-8"))
    except OSError as exc:
        raise ValueError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except RecursionError:
        raise ValueError(f"{path}: not usable YAML: nested too deeply") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from None
    except ValueError as exc:  # not a regular file, or larger than the cap
        raise ValueError(f"{path}: {exc}") from None
    http = data.get("http") if isinstance(data, dict) else None
    baseurls = http.get("baseurls") if isinstance(http, dict) else None
    urls = baseurls.get("buckets") if isinstance(baseurls, dict) else None
    if urls is None:
        return ()
    if isinstance(urls, str):
        urls = [urls]
    if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
        raise ValueError(f"{path}: http.baseurls.buckets: expected an http(s) URL or a list of them, got {urls!r}")
    for url in urls:
        try:
            config_values.url(url, ("http", "https"))
        except ValueError as exc:
            raise ValueError(f"{path}: http.baseurls.buckets: {exc}") from None
    return tuple(u.rstrip("/") for u in urls)
