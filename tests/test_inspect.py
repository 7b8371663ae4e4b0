"""Inspect: a service's spec as the engine has it (env values masked) and its drift from the compose file."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import pytest
from tui_fakes import FakeCollector, chime, fake_config, frozen_clock, kko

from dtmon.app import DtmonApp
from dtmon.collectors.spec import (
    MASK,
    DriftItem,
    compose_images,
    normal_image,
    service_drift,
    service_spec,
    spec_lines,
    stack_drift,
)
from dtmon.screens.spec import InspectScreen

RAW = {
    "ID": "svc123456789abc",
    "CreatedAt": "2026-11-25T20:00:00.1Z",
    "UpdatedAt": "2026-11-25T21:00:00.1Z",
    "PreviousSpec": {"Name": "dt_api"},
    "Spec": {
        "Name": "dt_api",
        "Labels": {"com.docker.stack.namespace": "dt", "team": "frb\x1b]0;owned\x07"},
        "Mode": {"Replicated": {"Replicas": 2}},
        "UpdateConfig": {"Parallelism": 2, "Delay": 5_000_000_000, "FailureAction": "pause", "Order": "start-first"},
        "TaskTemplate": {
            "ContainerSpec": {
                "Image": "chimefrb/api:v3@sha256:" + "a" * 64,
                "Env": ["SECRET_TOKEN=hunter2", "MODE=prod", "EMPTY"],
                "Mounts": [{"Type": "bind", "Source": "/data", "Target": "/srv", "ReadOnly": True}],
                "Args": ["serve", "--port", "80"],
            },
            "Placement": {"Constraints": ["node.role == manager"]},
            "RestartPolicy": {"Condition": "on-failure", "MaxAttempts": 3, "Delay": 90_000_000_000},
        },
    },
}


def test_spec_fields_are_read_and_env_values_never_kept():
    spec = service_spec(RAW)
    assert spec.image == "chimefrb/api:v3@sha256:" + "a" * 64
    assert (spec.mode, spec.replicas) == ("replicated", 2)
    assert spec.env_keys == ("SECRET_TOKEN", "MODE", "EMPTY")
    assert spec.mounts == ("bind /data -> /srv (ro)",)
    assert spec.constraints == ("node.role == manager",)
    assert dict(spec.update_policy) == {"parallelism": "2", "delay": "5s", "failure action": "pause", "order": "start-first"}
    assert dict(spec.restart_policy) == {"condition": "on-failure", "delay": "1m30s", "max attempts": "3"}
    assert spec.command == "serve --port 80" and spec.has_previous
    lines = spec_lines(spec)
    shown = "\n".join(line for _, line in lines)
    assert "hunter2" not in shown and "prod" not in shown and f"SECRET_TOKEN={MASK}" in shown
    assert "\x1b" not in shown and "\x07" not in shown and "team=frb^[]0;owned^G" in shown
    assert service_spec(None).name == "" and service_spec({"Spec": "x"}).env_keys == ()  # garbage is no crash


def test_drift_names_image_replicas_missing_and_extra():
    spec = service_spec(RAW)
    drift = service_drift("api", spec, {"api": "chimefrb/api:v4"}, {"api": 1})
    assert [d.what for d in drift] == ["image", "replicas"]
    assert drift[0].text() == "api: image chimefrb/api:v4 in the compose file, chimefrb/api:v3 deployed"
    assert drift[1].text() == "api: replicas 1 in the compose file, 2 deployed"
    assert service_drift("api", spec, {"api": "chimefrb/api:v3"}, {"api": 2}) == []  # the digest is no drift
    assert service_drift("api", spec, {"api": "chimefrb/api:${TAG}"}, {"api": 2}) == []  # known only at deploy
    assert [d.what for d in service_drift("other", spec, {}, {})] == ["extra"]
    assert normal_image("busybox") == normal_image("docker.io/library/busybox:latest") == "busybox:latest"
    assert normal_image("registry:5000/x") == "registry:5000/x:latest"
    rows = [r for r in chime().services if r.stack == "datatrail-client"] + [
        r for r in chime().services if r.service == "debug_shell"]
    assert [(d.what, d.service) for d in stack_drift(rows)] == [("missing", "update_canfar_certificates"),
                                                                ("extra", "debug_shell")]


class SpecCollector(FakeCollector):
    def inspect(self, service):
        return service_spec(replace_name(RAW, service.name))


def replace_name(raw: dict, name: str) -> dict:
    data = json.loads(json.dumps(raw))
    data["Spec"]["Name"] = name
    return data


def inspect_app(compose: Path | None = None) -> DtmonApp:
    return DtmonApp(fake_config(), title_suffix="test", collectors=[SpecCollector(chime()), FakeCollector(kko())],
                    clock=frozen_clock, tick=3600)


async def open_inspect(pilot, key: str):
    app = pilot.app
    deadline = time.monotonic() + 30
    while app.polls < 2:
        assert time.monotonic() < deadline
        await pilot.pause(0.02)
    table = app.query_one("#services")
    keys = [table.coordinate_to_cell_key((i, 0))[0].value for i in range(table.row_count)]
    await pilot.press(*["down"] * keys.index(key), "i")
    screen = app.screen
    assert isinstance(screen, InspectScreen)
    while not screen.fetched:
        assert time.monotonic() < deadline
        await pilot.pause(0.02)
    await pilot.pause()
    return screen


async def test_i_on_a_service_opens_its_spec_and_drift_and_esc_goes_back():
    app = inspect_app()
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_inspect(pilot, "chime/datatrail-client_replicator")
        text = str(screen.query_one("#inspect-text").render())
        assert "update_canfar_certificates: in the compose file, not deployed" in text
        assert f"SECRET_TOKEN={MASK}" in text and "hunter2" not in text
        assert "image chimefrb/api:v3@sha256:" in text
        await pilot.press("escape")
        assert not isinstance(app.screen, InspectScreen)


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
def test_inspect_snapshot(snap_compare, size):
    async def run_before(pilot):
        await open_inspect(pilot, "chime/datatrail-daemons_debug_shell")

    assert snap_compare(inspect_app(), terminal_size=size, run_before=run_before)


# ---------------------------------------------------------------------------
# A real engine: what inspect shows equals `docker service inspect`.
# ---------------------------------------------------------------------------

DEPLOYED = """\
version: "3.8"
services:
  api:
    image: dtmon-test/busybox:latest
    command: ["sleep", "86400"]
    stop_grace_period: 1s
    networks: [hostnet]
    environment: {SECRET_TOKEN: hunter2, MODE: prod}
    volumes: ["/tmp:/data:ro"]
    labels: {team: frb}
    deploy:
      replicas: 1
      labels: {owner: ops}
      placement: {constraints: ["node.role == manager"]}
      update_config: {parallelism: 2, delay: 5s, order: start-first}
      restart_policy: {condition: on-failure, max_attempts: 3}
  stray:
    image: dtmon-test/busybox:latest
    command: ["sleep", "86400"]
    stop_grace_period: 1s
    networks: [hostnet]
networks:
  hostnet: {external: true, name: host}
"""

DECLARED = """\
version: "3.8"
services:
  api:
    image: dtmon-test/busybox:v2
    deploy: {replicas: 3}
  absent:
    image: dtmon-test/busybox:latest
"""


@pytest.mark.engine
def test_inspect_equals_docker_service_inspect_and_drift_is_found(tmp_path):
    import asyncio

    from engines import Dockerd, require_engines, write_config

    from dtmon.collectors.swarm import SwarmCollector
    from dtmon.config import load

    require_engines()
    (tmp_path / "deployed.yaml").write_text(DEPLOYED)
    (tmp_path / "declared.yaml").write_text(DECLARED)
    engine = Dockerd("insp")
    try:
        engine.boot()
        engine.stack_deploy(tmp_path / "deployed.yaml", "dt")
        engine.wait_converged({"dt_api": (1, 1), "dt_stray": (1, 1)})
        config = load(write_config(tmp_path / "c.toml", [("lone", engine.url, {"dt": tmp_path / "declared.yaml"})]))
        collector = SwarmCollector(config.sites[0], config.timeout, config.health)
        try:
            status = collector.poll()
            api = next(s for s in status.services if s.service == "api")
            spec = collector.inspect(api)
        finally:
            collector.close()
        raw = json.loads(engine.docker("service", "inspect", "dt_api").stdout)[0]
        container = raw["Spec"]["TaskTemplate"]["ContainerSpec"]
        assert spec.image == container["Image"]
        assert spec.env_keys == tuple(e.split("=", 1)[0] for e in container["Env"])
        assert set(spec.env_keys) == {"SECRET_TOKEN", "MODE"}
        assert spec.mounts == tuple(f"{m['Type']} {m['Source']} -> {m['Target']}" + (" (ro)" if m.get("ReadOnly") else "")
                                    for m in container["Mounts"])
        assert spec.constraints == tuple(raw["Spec"]["TaskTemplate"]["Placement"]["Constraints"])
        assert dict(spec.labels) == raw["Spec"]["Labels"] and dict(spec.labels)["owner"] == "ops"
        assert dict(spec.container_labels)["team"] == "frb"
        assert spec.replicas == raw["Spec"]["Mode"]["Replicated"]["Replicas"] == 1
        assert dict(spec.update_policy)["parallelism"] == str(raw["Spec"]["UpdateConfig"]["Parallelism"]) == "2"
        assert dict(spec.update_policy)["order"] == raw["Spec"]["UpdateConfig"]["Order"] == "start-first"
        assert dict(spec.restart_policy)["condition"] == raw["Spec"]["TaskTemplate"]["RestartPolicy"]["Condition"]
        assert "hunter2" not in repr(spec)
        # Drift against the compose file the config names.
        drift = service_drift("api", spec, compose_images(config.sites[0].stacks["dt"]), config.sites[0].compose_services["dt"])
        assert drift == [DriftItem("image", "api", "dtmon-test/busybox:v2", "dtmon-test/busybox:latest"),
                         DriftItem("replicas", "api", "3", "1")]
        assert [(d.what, d.service) for d in stack_drift(list(status.services))] == [("missing", "absent"),
                                                                                      ("extra", "stray")]

        async def on_screen() -> str:
            app = DtmonApp(config, clock=frozen_clock, tick=3600)
            async with app.run_test(size=(120, 40)) as pilot:
                while app.polls < 1:
                    await pilot.pause(0.05)
                app.push_screen(InspectScreen(api, app.collectors["lone"], config.sites[0].stacks["dt"],
                                              list(status.services)))
                await pilot.pause()
                screen = app.screen
                while not screen.fetched:
                    await pilot.pause(0.05)
                return str(screen.query_one("#inspect-text").render())

        text = asyncio.run(on_screen())
        assert "api: image dtmon-test/busybox:v2 in the compose file, dtmon-test/busybox:latest deployed" in text
        assert "api: replicas 3 in the compose file, 1 deployed" in text
        assert "absent: in the compose file, not deployed" in text and "stray: deployed, not in the compose file" in text
        assert f"SECRET_TOKEN={MASK}" in text and "hunter2" not in text
    finally:
        engine.stop()


async def test_i_on_the_detail_screen_inspects_its_service():
    from dtmon.screens.detail import DetailScreen

    app = inspect_app()
    async with app.run_test(size=(120, 40)) as pilot:
        while app.polls < 2:
            await pilot.pause(0.02)
        service = app.service("chime/datatrail_server")
        app.push_screen(DetailScreen(service, app.collectors["chime"], 3600.0, frozen_clock))
        await pilot.pause()
        await pilot.press("i")
        assert isinstance(app.screen, InspectScreen) and app.screen.service.key == "chime/datatrail_server"
