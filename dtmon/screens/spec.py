"""A service's spec as the engine holds it and its drift from the compose file; scrollable, read-only."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.content import Content
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Static

from ..collectors.spec import DriftItem, ServiceSpec, compose_images, service_drift, spec_lines, stack_drift
from ..model import ServiceStatus
from ..sanitize import clean


@dataclass
class SpecFetched(Message):
    """An inspect finished: the spec and its drift, or why it failed."""

    spec: ServiceSpec | None
    drift: list[DriftItem]
    error: str | None


def inspect_text(spec: ServiceSpec | None, drift: list[DriftItem], drift_note: str | None) -> Text:
    """The whole screen's text: drift first (what a redeploy would change), then the spec by section."""
    text = Text(no_wrap=False, end="")
    text.append("drift from the compose file\n", style="bold")
    if drift_note:
        text.append(f"  {drift_note}\n", style="dim")
    elif drift:
        for item in drift:
            text.append(f"  {item.text()}\n", style="bold")
    else:
        text.append("  none: image and replicas as declared\n")
    if spec is None:
        return text
    section = None
    for name, line in spec_lines(spec):
        if name != section:
            section = name
            text.append(f"\n{name}\n", style="bold")
        text.append(f"  {line}\n")
    return text


class InspectScreen(Screen):
    """`docker service inspect` of one service, with its drift from the compose file."""

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back", tooltip="Back to where you were"),
    ]

    def __init__(self, service: ServiceStatus, collector: Any, compose: Any | None, stack_rows: list[ServiceStatus]) -> None:
        super().__init__(id="inspect")
        self.service = service
        self.collector = collector
        self.compose_file = compose  #: the stack's compose file (Path), None when the config names none
        self.stack_rows = stack_rows
        self.spec: ServiceSpec | None = None
        self.drift: list[DriftItem] = []
        self.error: str | None = None
        self.fetched = False

    def compose(self) -> ComposeResult:
        s = self.service
        yield Static(Content(f"inspect {s.site} ▸ {s.stack} ▸ {s.service}   ({s.name})"), id="detail-title", markup=False)
        with VerticalScroll(id="inspect-body"):
            yield Static(Content("fetching the spec…"), id="inspect-text", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#inspect-body").focus()
        self.run_worker(partial(self._fetch, self.service), thread=True, group="inspect", exit_on_error=False)

    def _fetch(self, service: ServiceStatus) -> None:
        drift = stack_drift(self.stack_rows)
        if service.id is None:
            self.post_message(SpecFetched(None, drift, "not deployed: nothing to inspect"))
            return
        try:
            spec = self.collector.inspect(service)
        except Exception as exc:  # shown on the screen, never a crash
            self.post_message(SpecFetched(None, drift, clean(f"{type(exc).__name__}: {exc}")))
            return
        try:
            images = compose_images(self.compose_file) if self.compose_file is not None else {}
            replicas = dict(getattr(self.collector.site, "compose_services", {}).get(service.stack, {}))
            drift = service_drift(service.service, spec, images, replicas) + [
                d for d in drift if d.what == "missing" or d.service != service.service]
        except ValueError as exc:
            self.post_message(SpecFetched(spec, drift, clean(f"compose file: {exc}")))
            return
        self.post_message(SpecFetched(spec, drift, None))

    def on_spec_fetched(self, message: SpecFetched) -> None:
        self.fetched = True
        self.spec, self.drift, self.error = message.spec, message.drift, message.error
        note = self.error if self.spec is None or (self.error or "").startswith("compose file") else None
        if self.spec is None and self.error:
            note = self.error
        self.query_one("#inspect-text", Static).update(inspect_text(self.spec, self.drift, note))
