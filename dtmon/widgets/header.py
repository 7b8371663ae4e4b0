"""The top bar: one chip per site (state, poll latency, age of the data) and the read-only marker."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import replace
from datetime import datetime

from rich.cells import cell_len
from textual.app import ComposeResult
from textual.geometry import Region
from textual.containers import Horizontal
from textual.content import Content
from textual.widget import Widget
from textual.widgets import Static

from ..format import Chip, site_chip, steady_latency
from ..model import SiteStatus

CHIP_STATES = ("ok", "problems", "unreachable", "pending")


class SiteChips(Widget):
    """Every site's chip on one line, coloured by state (component classes in styles/dtmon.tcss).

    One widget with a fixed size rather than a widget per chip: a chip whose text grows or shrinks
    would otherwise need a layout pass, which repaints far more than the chip.
    """

    COMPONENT_CLASSES = {f"sitechips--{state}" for state in CHIP_STATES}

    def __init__(self, sites: Sequence[str], late_after: float | None = None,
                 live_late_after: float | None = None, slow_after_ms: float | None = None) -> None:
        super().__init__(id="chips")
        self.slow_after_ms = slow_after_ms  #: latency below this is not shown: a figure that jitters every poll
        self.sites = tuple(sites)
        self.late_after = late_after
        #: A site with an open event stream is polled less often: its data is late only later.
        self.live_late_after = live_late_after if live_late_after is not None else late_after
        self._latency: dict[str, float | None] = {}
        self.shown: dict[str, Chip] = {name: Chip(f"{name} …", "pending") for name in self.sites}

    def show(self, sites: Sequence[SiteStatus], now: datetime, live: Collection[str] = ()) -> int:
        """Update the chips (`live`: the sites whose event stream is open); returns how many changed.
        Only the cells of changed chips are repainted (and those after a chip whose width changed)."""
        chips = {}
        for site in sites:
            shown = self._latency.get(site.name)
            self._latency[site.name] = steady = steady_latency(shown, site.latency_ms)
            is_live = site.name in live
            late_after = self.live_late_after if is_live else self.late_after
            chips[site.name] = site_chip(replace(site, latency_ms=steady), now, late_after, is_live, self.slow_after_ms)
        changed = [name for name in self.sites if name in chips and self.shown.get(name) != chips[name]]
        if not changed:
            return 0
        before = self._spans()
        self.shown.update(chips)
        after = self._spans()
        regions = []
        for name in changed:
            (x, old_width), (_, new_width) = before[name], after[name]
            if old_width == new_width:
                regions.append(Region(x, 0, new_width, 1))
            else:
                regions.append(Region(x, 0, max(0, self.size.width - x), 1))
                break  # everything to the right moved: one region covers it
        if self.size.width:
            self.refresh(*regions)
        return len(changed)

    def _spans(self) -> dict[str, tuple[int, int]]:
        """Where each chip sits on the line: (x, width) in cells."""
        spans, x = {}, 0
        for name in self.sites:
            width = cell_len(self.shown[name].text) + 2
            spans[name] = (x, width)
            x += width + 1
        return spans

    def state(self, site: str) -> str:
        return self.shown[site].state

    def render(self) -> Content:
        parts = [
            Content(f" {chip.text} ").stylize(self.get_visual_style(f"sitechips--{chip.state}"))
            for chip in (self.shown[name] for name in self.sites)
        ]
        return Content(" ").join(parts)


class SiteBar(Horizontal):
    """Chips for every site, then the read-only marker on the right."""

    def __init__(self, sites: Sequence[str], marker: str, late_after: float | None = None,
                 live_late_after: float | None = None, slow_after_ms: float | None = None) -> None:
        super().__init__(id="sitebar")
        self._slow_after_ms = slow_after_ms
        self.sites = tuple(sites)
        self._marker = marker
        self._late_after = late_after
        self._live_late_after = live_late_after

    def compose(self) -> ComposeResult:
        yield SiteChips(self.sites, self._late_after, self._live_late_after, self._slow_after_ms)
        yield Static(Content(self._marker), id="mode", markup=False)  # never changes: a Static will do

    def show(self, sites: Sequence[SiteStatus], now: datetime, live: Collection[str] = ()) -> int:
        """Update every chip; returns how many changed."""
        return self.query_one(SiteChips).show(sites, now, live)
