"""The test world's layout and deployment, shared by the fixtures (conftest.py) and scripts/bench.py.

- chime: `datatrail` (server, postgres_exporter, autossh_kko), `datatrail-daemons` (with
  `inventory` failing over and over at once, `healing_stager` failing after ~12 s of running,
  `replication_stager_kko` running 1 of 2 replicas, and an unexpected `debug_shell`),
  `datatrail-client` (deployed without `update_canfar_certificates`: a partly deployed stack).
- kko: `datatrail-client`, healthy, with `deletion_healer` scaled to 0 (a stopped consumer).
"""

from __future__ import annotations

from pathlib import Path

from engines import Dockerd, compose_variant, service_def

WORLD = Path(__file__).parent / "world"

#: site -> stack -> compose file the config names.
COMPOSE = {
    "chime": {
        "datatrail": WORLD / "chime" / "server-compose.yaml",
        "datatrail-daemons": WORLD / "chime" / "daemon-compose.yaml",
        "datatrail-client": WORLD / "chime" / "chime-client.yaml",
    },
    "kko": {"datatrail-client": WORLD / "kko" / "kko-client.yaml"},
}


def deploy_world(engines: dict[str, Dockerd], tmp: Path) -> None:
    """Deploy the world's stacks on started engines and wait until each service is in its planned state."""
    chime, kko = engines["chime"], engines["kko"]
    chime.stack_deploy(COMPOSE["chime"]["datatrail"], "datatrail")
    daemons = compose_variant(
        COMPOSE["chime"]["datatrail-daemons"], tmp / "deployed" / "chime-daemons.yaml",
        add={"debug_shell": service_def()},
    )
    chime.stack_deploy(daemons, "datatrail-daemons")
    client = compose_variant(
        COMPOSE["chime"]["datatrail-client"], tmp / "deployed" / "chime-client.yaml",
        drop=["update_canfar_certificates"],
    )
    chime.stack_deploy(client, "datatrail-client")
    kko.stack_deploy(COMPOSE["kko"]["datatrail-client"], "datatrail-client")

    healthy_chime = ["datatrail_server", "datatrail_postgres_exporter", "datatrail_autossh_kko"]
    healthy_chime += [f"datatrail-daemons_{s}" for s in
                      ("state_updater", "metric_pusher", "deletion_stager_kko", "debug_shell")]
    healthy_chime += [f"datatrail-client_{s}" for s in
                      ("replicator", "deletion_healer", "replication_healer", "event_registration",
                       "reattempt_unregistered")]
    expect = {name: (1, 1) for name in healthy_chime}
    expect["datatrail-daemons_replication_stager_kko"] = (1, 2)
    chime.wait_converged(expect)
    kko.wait_converged({**{f"datatrail-client_{s}": (1, 1) for s in
                           ("replicator", "replication_healer", "event_registration",
                            "reattempt_unregistered", "update_canfar_certificates")},
                        "datatrail-client_deletion_healer": (0, 0)})

    def inventory_looping() -> bool:  # a crash loop by dtmon's default rule: 3 failures within 10 minutes
        tasks = chime.tasks("datatrail-daemons_inventory")
        return sum(1 for t in tasks if (t.get("Status") or {}).get("State") == "failed") >= 3

    chime.wait_until(inventory_looping, 60, "inventory to fail three times", interval=0.3)
