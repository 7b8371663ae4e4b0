"""The top bar: one chip per site (state, poll latency, age of the data) and the read-only marker."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.content import Content
from textual.widgets import Static

from ..format import Chip, site_chip
from ..model import SiteStatus

CHIP_STATES = ("ok", "problems", "unreachable", "pending")


def _chip_id(site: str) -> str:
    return "chip-" + re.sub(r"[^A-Za-z0-9_-]", "_", site)


class SiteChip(Static):
    """One site's chip; repainted only when its text or state changes (repaints cost bytes over SSH)."""

    def __init__(self, site: str) -> None:
        super().__init__("", id=_chip_id(site), classes="chip -pending", markup=False)
        self.site = site
        self.shown: Chip | None = None

    def show(self, chip: Chip) -> bool:
        """Display `chip`; returns whether anything had to be repainted."""
        if chip == self.shown:
            return False
        if self.shown is None or chip.state != self.shown.state:
            for state in CHIP_STATES:
                self.set_class(state == chip.state, f"-{state}")
        if self.shown is None or chip.text != self.shown.text:
            self.update(Content(chip.text))
        self.shown = chip
        return True


class SiteBar(Horizontal):
    """Chips for every site, then the read-only marker on the right."""

    def __init__(self, sites: Sequence[str], marker: str) -> None:
        super().__init__(id="sitebar")
        self.sites = tuple(sites)
        self._marker = marker

    def compose(self) -> ComposeResult:
        with Horizontal(id="chips"):
            for site in self.sites:
                yield SiteChip(site)
        yield Static(Content(self._marker), id="mode", markup=False)

    def show(self, sites: Sequence[SiteStatus], now: datetime) -> int:
        """Update every chip; returns how many had to be repainted."""
        changed = 0
        for site in sites:
            chip = self.query_one(f"#{_chip_id(site.name)}", SiteChip)
            changed += chip.show(site_chip(site, now))
        return changed
