"""The nodes of every site (as `docker node ls` shows them, plus the watched tasks running on each). Read-only."""

from __future__ import annotations

from collections.abc import Sequence

from textual.app import ComposeResult
from textual.binding import Binding
from textual.content import Content
from textual.screen import Screen
from textual.widgets import Footer, Static

from ..format import NODE_COLUMNS, node_rows
from ..model import SiteStatus
from ..widgets.table import KeyedTable


def nodes_summary(sites: Sequence[SiteStatus]) -> str:
    """One line: how many nodes, how many need attention, and which sites could not say."""
    nodes = sum(len(s.nodes) for s in sites)
    bad = sum(s.node_problems for s in sites)
    parts = [f"{nodes} node{'s' if nodes != 1 else ''}",
             f"{bad} down or drained" if bad else "all ready and active"]
    stale = [s.name for s in sites if not s.reachable]
    if stale:
        parts.append(f"not answering (last known, dimmed): {', '.join(stale)}")
    return " · ".join(parts)


class NodesScreen(Screen):
    """Every site's swarm nodes, refreshed with each poll."""

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back", tooltip="Back to the services"),
    ]

    def __init__(self, sites: Sequence[SiteStatus]) -> None:
        super().__init__(id="nodes-screen")
        self.sites = tuple(sites)

    def compose(self) -> ComposeResult:
        yield Static(Content("nodes"), id="detail-title", markup=False)
        yield Static(id="nodes-summary", markup=False)
        yield KeyedTable(id="nodes")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#nodes", KeyedTable)
        table.set_columns(NODE_COLUMNS, node_rows(self.sites))
        table.focus()
        self.show(self.sites)

    def show(self, sites: Sequence[SiteStatus]) -> None:
        """The latest poll of every site."""
        self.sites = tuple(sites)
        self.query_one("#nodes", KeyedTable).apply(node_rows(self.sites))
        summary = self.query_one("#nodes-summary", Static)
        text = nodes_summary(self.sites)
        if str(summary.render()) != text:
            summary.update(Content(text))
        summary.set_class(any(s.node_problems for s in self.sites), "-error")
