#!/usr/bin/env python3
"""Make the README's screenshots: SVGs of the real app on the demo world, written to screenshots/.

    python scripts/screenshots.py [--out screenshots]

The demo world's clock is held still while the pictures are taken, so the scene is the same from
one run to the next: every site polled once, then hco's manager stops answering (its last good
data stays on screen, dimmed, with the error), chime's inventory keeps failing, gbo's replicator
runs 1 of 2, hco's update_canfar_certificates is missing and kko runs an unexpected debug_shell.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dtmon.app import DtmonApp  # noqa: E402
from dtmon.config import load  # noqa: E402
from dtmon.demo import Demo  # noqa: E402
from dtmon.demo.world import OUTAGE_FIRST  # noqa: E402
from dtmon.screens.detail import DetailScreen  # noqa: E402


async def until(pilot, condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"screenshots: gave up waiting for {condition}")
        await pilot.pause(0.05)
    await pilot.pause(0.2)


def row_keys(app: DtmonApp) -> list[str]:
    table = app.query_one("#services")
    return [table.coordinate_to_cell_key((i, 0))[0].value for i in range(table.row_count)]


async def shoot(out: Path) -> list[Path]:
    # World time runs only when we move it; real time stays close, so ages read naturally.
    world_now = [time.time()]
    start = world_now[0] - OUTAGE_FIRST + 30  # hco's first outage begins 30 s from now
    demo = Demo(start=start, clock=lambda: world_now[0], refresh=2.0, timeout=1.5)
    written: list[Path] = []
    try:
        config = load(demo.start())
        app = DtmonApp(config, title_suffix="demo", tick=3600)

        def save(name: str) -> None:
            path = out / name
            path.write_text(app.export_screenshot(title=f"dtmon demo — {name.removesuffix('.svg')}"))
            written.append(path)

        async with app.run_test(size=(200, 50)) as pilot:
            await until(pilot, lambda: all(s.polled_at is not None for s in app.sites.values()))
            world_now[0] += 60  # into hco's outage: its manager stops answering
            await until(pilot, lambda: not app.sites["hco"].reachable)
            save("overview-200x50.svg")

            await pilot.resize_terminal(80, 24)
            await pilot.pause(0.3)
            save("overview-80x24.svg")
            await pilot.press("p")
            await pilot.pause(0.2)
            save("problems-80x24.svg")
            await pilot.press("p", "slash", *"stager")
            await pilot.pause(0.2)
            save("filter-80x24.svg")
            await pilot.press("escape")

            await pilot.resize_terminal(120, 36)
            await pilot.pause(0.3)
            target = "chime/datatrail-daemons_inventory"
            app.query_one("#services").move_cursor(row=row_keys(app).index(target))
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, DetailScreen) and app.screen.fetches >= 1)
            save("detail.svg")
            await pilot.press("escape", "question_mark")
            await pilot.pause(0.3)
            save("help.svg")
    finally:
        demo.stop()
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "screenshots", help="directory for the SVGs")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for path in asyncio.run(shoot(args.out)):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
