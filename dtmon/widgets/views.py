"""The dashboard's views: the services table and the panes beside it (buckets, progress, ...).

Wide and tall terminals show every view at once, the panes stacked under the services; smaller ones
(80×24) show one view at a time as tabs. Either way each view is one key away: 1, 2, 3...
A pane may post `ViewBadge` to put a short note on its tab (e.g. "!2" when two of its rows need attention),
so a problem in a hidden tab still shows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Tab, Tabs

#: Below either of these sizes, the views become tabs.
WIDE_WIDTH, WIDE_HEIGHT = 120, 36


@dataclass
class ViewBadge(Message):
    """A view's tab note changed ("" for none)."""

    view_id: str
    badge: str


class Views(Vertical):
    """Holds the services table then the panes; tabs when small, stacked when large."""

    DEFAULT_CSS = """
    Views { height: 1fr; }
    Views > #view-tabs { display: none; }
    Views.-tabs > #view-tabs { display: block; }
    """

    BINDINGS = [
        Binding("1", "show_view(0)", "View 1", show=False, tooltip="Show the services (first view)"),
        Binding("2", "show_view(1)", "View 2", show=False, tooltip="Show the second view (e.g. buckets)"),
        Binding("3", "show_view(2)", "View 3", show=False, tooltip="Show the third view (e.g. progress)"),
    ]

    def __init__(self, *children: Widget, id: str | None = "views") -> None:
        super().__init__(*children, id=id)
        self.active = 0
        self.tabbed: bool | None = None
        self._badges: dict[str, str] = {}

    # -- structure -------------------------------------------------------------------

    @property
    def views(self) -> list[Widget]:
        return [child for child in self.children if not isinstance(child, Tabs)]

    @staticmethod
    def title(view: Widget) -> str:
        return getattr(view, "VIEW_TITLE", None) or (view.id or type(view).__name__).replace("-", " ")

    def _label(self, index: int, view: Widget) -> str:
        badge = self._badges.get(view.id or "", "")
        return f"{index + 1} {self.title(view)}" + (f" {badge}" if badge else "")

    def on_mount(self) -> None:
        tabs = [Tab(self._label(i, v), id=f"tab-{v.id}") for i, v in enumerate(self.views)]
        self.mount(Tabs(*tabs, id="view-tabs"), before=0)
        self._layout()

    def on_resize(self) -> None:
        self._layout()

    # -- layout ----------------------------------------------------------------------

    def _layout(self) -> None:
        views = self.views
        tabbed = len(views) > 1 and (self.size.width < WIDE_WIDTH or self.size.height < WIDE_HEIGHT)
        self.tabbed = tabbed
        self.set_class(tabbed, "-tabs")
        extras = views[1:]
        for index, view in enumerate(views):
            view.display = not tabbed or index == self.active
            if index:
                view.styles.height = "1fr" if tabbed else ("40%" if len(extras) == 1 else f"{60 // len(extras)}%")

    # -- keys ------------------------------------------------------------------------

    def help_bindings(self) -> list[Binding]:
        """The keys of the views this dashboard has, each described by its view's title (for the help)."""
        views = self.views
        shown = []
        for binding in self.BINDINGS:
            match = re.fullmatch(r"show_view\((\d+)\)", binding.action)
            if match and int(match.group(1)) < len(views):
                title = self.title(views[int(match.group(1))])
                shown.append(replace(binding, tooltip=f"Show the {title} view"))
        return shown

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "show_view":
            return bool(parameters) and isinstance(parameters[0], int) and parameters[0] < len(self.views)
        return True

    def action_show_view(self, index: int) -> None:
        self.show_view(index)

    def show_view(self, index: int) -> None:
        """Make view `index` the active one (the only one shown when tabbed) and focus it."""
        views = self.views
        if not 0 <= index < len(views):
            return
        self.active = index
        view = views[index]
        tabs = self.query("#view-tabs").results(Tabs)
        for bar in tabs:
            if bar.active != f"tab-{view.id}":
                bar.active = f"tab-{view.id}"
        self._layout()
        target = view if view.can_focus else next((w for w in view.query("*") if w.can_focus), None)
        if target is not None:
            target.focus()

    def on_tabs_tab_activated(self, event: Tabs.TabActivated) -> None:
        event.stop()
        ids = [f"tab-{v.id}" for v in self.views]
        if event.tab.id in ids and ids.index(event.tab.id) != self.active:
            self.show_view(ids.index(event.tab.id))

    def on_view_badge(self, message: ViewBadge) -> None:
        message.stop()
        if self._badges.get(message.view_id, "") == message.badge:
            return
        self._badges[message.view_id] = message.badge
        for index, view in enumerate(self.views):
            if view.id == message.view_id:
                for bar in self.query("#view-tabs").results(Tabs):
                    tab = bar.query(f"#tab-{view.id}").results(Tab)
                    for item in tab:
                        item.label = self._label(index, view)
