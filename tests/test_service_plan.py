"""The pure parts of scale and rollback: their plans' refusals and notes, and what a rollback changes."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from dtmon.actions.plan import ROLLBACK, SCALE, WAIT_ROLLED_BACK, WAIT_SCALED
from dtmon.actions.service_ops import changes
from dtmon.actions.service_plan import plan_rollback, plan_scale
from dtmon.config import Config, DeployConfig, SiteConfig
from dtmon.model import RUNNING, UPDATING, ServiceStatus, SiteStatus, Snapshot, StackStatus

NOW = datetime(2026, 12, 2, 12, tzinfo=timezone.utc)


def svc(name="replicator", mode="replicated", state=RUNNING, desired=1, **extra) -> ServiceStatus:
    return ServiceStatus("chime", "client", name, f"client_{name}", mode, desired, desired, state, "img:1", NOW,
                         None, None, 0, id=f"id-{name}", **extra)


def world(*services: ServiceStatus) -> tuple[Config, Snapshot]:
    site = SiteConfig(name="chime", docker="unix:///x.sock", stacks={"client": Path("/nowhere.yaml")})
    config = Config(None, sites=(site,), deploy=DeployConfig(allow=True, monitor=7))
    snap = Snapshot(NOW, (SiteStatus("chime", True, stacks=(StackStatus("client", services),)),))
    return config, snap


def spec(image="img:1", replicas=1, env=()):
    return {"Mode": {"Replicated": {"Replicas": replicas}},
            "TaskTemplate": {"ContainerSpec": {"Image": image + "@sha256:abc", "Env": list(env)}}}


def test_a_scale_plan_names_the_count_and_warns_when_the_compose_file_says_another():
    config, snap = world(svc(desired=1))
    plan = plan_scale(config, snap, "chime", "replicator", 3, declared=1)
    assert plan.ok and plan.title == "scale client_replicator at chime to 3"
    assert [s.kind for s in plan.steps] == [SCALE, WAIT_SCALED]
    assert "service scale client_replicator=3" in plan.steps[0].command and plan.steps[0].replicas == 3
    assert "for 7s with no task failing" in plan.steps[1].command
    assert any("the next redeploy puts it back to 1" in n for n in plan.notes)
    assert not any("compose" in n for n in plan_scale(config, snap, "chime", "replicator", 1, declared=1).notes)


def test_scale_refuses_a_global_service_an_updating_one_and_an_unknown_one():
    config, snap = world(svc("agent", mode="global"), svc("busy", state=UPDATING, update_message="updating"))
    assert "is a global service" in plan_scale(config, snap, "chime", "agent", 2).refusal
    assert "already updating" in plan_scale(config, snap, "chime", "busy", 2).refusal
    assert "no watched service 'nope'" in plan_scale(config, snap, "chime", "nope", 2).refusal
    assert "unknown site 'x'" in plan_scale(config, snap, "x", "agent", 2).refusal


def test_rollback_is_refused_without_a_previous_spec_and_says_what_changes_with_one():
    config, snap = world(svc())
    none = plan_rollback(config, snap, "chime", "replicator", {"ID": "id-replicator", "Spec": spec()})
    assert "has no previous spec to roll back to" in none.refusal and not none.steps
    replaced = plan_rollback(config, snap, "chime", "replicator", {"ID": "other", "Spec": spec(), "PreviousSpec": spec()})
    assert "was replaced" in replaced.refusal
    inspected = {"ID": "id-replicator", "Spec": spec("img:2", 1, ["A=1", "B=secret"]),
                 "PreviousSpec": spec("img:1", 3, ["A=2", "C=x"])}
    plan = plan_rollback(config, snap, "chime", "replicator", inspected)
    assert plan.ok and [s.kind for s in plan.steps] == [ROLLBACK, WAIT_ROLLED_BACK]
    text = plan.text()
    assert "image: img:2 -> img:1" in text and "replicas: 1 -> 3" in text
    assert "env changed (values not shown): A" in text and "env added back: C" in text and "env removed: B" in text
    assert "secret" not in text and "=1" not in text


def test_changes_are_clean_text_and_say_when_nothing_visible_differs():
    assert changes(spec(), spec()) == ["no change of image, replicas or env (other parts of the spec differ)"]
    hostile = changes(spec(env=["\x1b[31mKEY=1"]), spec())
    assert "\x1b" not in hostile[0] and "KEY" in hostile[0]
