"""A one-line text widget that repaints only itself, and only when its text changes."""

from __future__ import annotations

from textual.content import Content
from textual.widget import Widget


class Line(Widget):
    """One line of content whose size comes from CSS, so an update never needs a layout pass.

    `Static.update` always asks for a layout pass, and a layout pass repaints more than the label
    (the table's scrollbar, for one): over SSH every repaint is paid for in bytes.
    """

    DEFAULT_CSS = """
    Line { height: 1; width: 1fr; }
    """

    def __init__(self, text: str = "", *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.text = text

    def set(self, text: str) -> bool:
        """Show `text`; returns whether a repaint was needed."""
        if text == self.text:
            return False
        self.text = text
        self.refresh()
        return True

    def render(self) -> Content:
        return Content(self.text)
