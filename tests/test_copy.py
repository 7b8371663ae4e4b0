"""Copy (c, C): what goes to the clipboard, and the OSC 52 bytes the dashboard writes to its terminal."""

from __future__ import annotations

import base64
import os
import re
import sys
import time
from pathlib import Path

from tui_fakes import chime, fake_config, frozen_clock, kko, world

from dtmon.actions.plan import Plan, Step
from dtmon.app import DtmonApp
from dtmon.clipboard import host_flags, plan_commands, safe, view_command
from dtmon.config import Config, SiteConfig

sys.path.insert(0, str(Path(__file__).parent))
from hostile import HostileEngine, write_hostile_config  # noqa: E402
from ptyterm import PtyTerminal, visible  # noqa: E402

OSC52 = re.compile(rb"\x1b\]52;c;([A-Za-z0-9+/=]*)(?:\x07|\x1b\\)")


def test_what_is_copied_is_clean_and_bounded():
    assert safe("a\x1b]0;x\x07b\nnext") == "a^[]0;x^Gb\nnext"
    assert len(safe("x" * 50_000)) == 10_000
    assert host_flags("tcp://alice:secret@host:2376") == ["--host", "tcp://alice:***@host:2376"]
    assert view_command("services", "dt_svc", ["--host", "unix:///s"]) == "docker --host unix:///s service ps dt_svc"
    assert view_command("detail", "dt_svc", []) == "docker service logs --tail 100 dt_svc"
    assert view_command("inspect", "dt_svc", []) == "docker service inspect dt_svc"
    assert view_command("nodes", None, []) == "docker node ls"
    assert view_command("services", "a b;rm -rf", []) == "docker service ps 'a b;rm -rf'"  # quoted for a shell
    plan = Plan("restart", "chime", "dt_svc", steps=(
        Step("restart", "restart", "…", argv=("docker", "--host", "unix:///s", "service", "update", "--force", "dt_svc")),
        Step("wait", "wait", "wait until …")))
    assert plan_commands(plan) == "docker --host unix:///s service update --force dt_svc"


def app_with_sites() -> DtmonApp:
    config = Config(None, refresh=3600.0, timeout=1.0,
                    sites=(SiteConfig("chime", "unix:///run/chime.sock"), SiteConfig("kko", "unix:///run/kko.sock")))
    return DtmonApp(config, collectors=world(chime(), kko()), clock=frozen_clock, tick=3600)


async def test_c_copies_the_name_and_C_the_command_with_a_notice():
    app = app_with_sites()
    async with app.run_test(size=(120, 40)) as pilot:
        while app.polls < 2:
            await pilot.pause(0.02)
        table = app.query_one("#services")
        keys = [table.coordinate_to_cell_key((i, 0))[0].value for i in range(table.row_count)]
        await pilot.press(*["down"] * keys.index("chime/datatrail-daemons_inventory"), "c")
        assert app.clipboard == "datatrail-daemons_inventory"
        assert any("copied the service's name: datatrail-daemons_inventory" in n.message for n in app._notifications)
        await pilot.press("C")
        assert app.clipboard == "docker --host unix:///run/chime.sock service ps datatrail-daemons_inventory"
        await pilot.press("enter")
        await pilot.pause()
        await pilot.press("C")
        assert app.clipboard == "docker --host unix:///run/chime.sock service logs --tail 100 datatrail-daemons_inventory"
        app.last_plan = Plan("restart", "chime", "x", steps=(Step("restart", "r", "…", argv=("docker", "service", "update",
                                                                                                  "--force", "x")),))
        await pilot.press("C")
        assert app.clipboard == "docker service update --force x"
        await pilot.press("escape", "n", "c")
        assert app.clipboard == "docker service update --force x"  # the fake world has no nodes: nothing copied


def test_the_terminal_gets_an_osc52_with_the_cleaned_name(tmp_path):
    with HostileEngine(tmp_path / "engine.sock", "escapes") as engine:
        config = write_hostile_config(tmp_path, engine)
        with PtyTerminal([sys.executable, "-m", "dtmon", "--config", str(config)], lines=40, columns=160) as term:
            data = term.read_for(5)
            assert "4 services" in visible(data), visible(data)[-2000:]
            os.write(term.fd, b"\x1b[B\x1b[B")  # down to the first service: the failing dt_link_… one
            term.read_for(1)
            os.write(term.fd, b"c")
            copied = term.read_for(2)
            os.write(term.fd, b"C")
            command = term.read_for(2)
            os.write(term.fd, b"q")
            term.read_for(2)
    payloads = [base64.b64decode(m) .decode() for m in OSC52.findall(copied)]
    assert len(payloads) == 1, copied
    name = payloads[0]
    assert name.startswith("dt_link_") and not re.search("[\x00-\x1f\x7f-\x9f]", name), repr(name)
    assert "^[" in name  # the link's escape is shown, as everywhere else, not sent
    assert "copied the service" in visible(copied)
    commands = [base64.b64decode(m).decode() for m in OSC52.findall(command)]
    assert commands and commands[0].startswith(f"docker --host unix://{engine.url.removeprefix('unix://')} service ps ")
    assert not re.search("[\x00-\x1f\x7f-\x9f]", commands[0])
