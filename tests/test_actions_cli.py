"""The action subcommands without engines: read-only refusal, typed confirmation, the audit view."""

from __future__ import annotations

import io

from dtmon.actions.cli import _confirm
from dtmon.actions.plan import Plan
from dtmon.cli import main


def write_config(tmp_path, allow: bool) -> str:
    compose = tmp_path / "kko-client.yaml"
    compose.write_text("services:\n  replicator:\n    image: x\n")
    path = tmp_path / "config.toml"
    path.write_text(
        f'[sites.kko]\ndocker = "unix://{tmp_path}/none.sock"\n[sites.kko.stacks]\n"datatrail-client" = "{compose}"\n'
        f'[deploy]\nallow = {"true" if allow else "false"}\naudit = "{tmp_path}/audit.jsonl"\n'
    )
    return str(path)


def test_read_only_refuses_restart_and_redeploy_with_exit_2(tmp_path, capsys):
    config = write_config(tmp_path, allow=False)
    assert main(["--config", config, "redeploy", "kko", "datatrail-client", "--yes"]) == 2
    assert main(["--config", config, "restart", "kko", "datatrail-client_replicator", "--yes"]) == 2
    err = capsys.readouterr().err
    assert err.count("read-only") == 2
    assert not (tmp_path / "audit.jsonl").exists()


def test_allowed_but_site_unreachable_is_refused_with_exit_1_and_audited(tmp_path, capsys):
    config = write_config(tmp_path, allow=False)
    assert main(["--config", config, "--allow-actions", "restart", "kko", "replicator", "--yes"]) == 1
    assert "REFUSED: site kko is unreachable" in capsys.readouterr().out
    assert main(["--config", config, "audit"]) == 0
    assert "restart replicator at kko  -> REFUSED" in capsys.readouterr().out


def test_core_confirmation_needs_the_stack_name_typed():
    core = Plan("redeploy", "chime", "datatrail", core=True)
    out = io.StringIO()
    assert not _confirm(core, io.StringIO("y\n"), out)
    assert "Type the stack name (datatrail)" in out.getvalue()
    assert _confirm(core, io.StringIO("datatrail\n"), io.StringIO())
    plain = Plan("redeploy", "kko", "datatrail-client")
    assert _confirm(plain, io.StringIO("y\n"), io.StringIO())
    assert not _confirm(plain, io.StringIO(""), io.StringIO())  # EOF: cancelled
