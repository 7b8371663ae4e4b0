"""The dashboard with a Buckets service (the Buckets-compatible server on loopback) beside fake sites:
the buckets view as a tab at 80×24 (one key away) and beside the services when large; in-place refresh."""

from __future__ import annotations

import time

from buckets_peers import buckets_server  # noqa: F401 - fixture
from tui_fakes import chime, frozen_clock, kko, world

from dtmon.app import DtmonApp
from dtmon.config import BucketsConfig, Config
from dtmon.widgets.buckets import PROBLEM_MARK, BucketsPane, BucketsTable
from dtmon.widgets.table import ServicesTable
from dtmon.widgets.views import Views

KKO, INVENTORY, HEAL = "datatrail-replicator-kko-minoc", "datatrail-inventory", "datatrail-replica-heal"


async def until(pilot, condition, timeout: float = 30.0) -> None:  # generous: a loaded machine is slow, a pass is not
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition never held: {condition}")
        await pilot.pause(0.02)


def make_app(url: str) -> DtmonApp:
    buckets = BucketsConfig(url, ("datatrail-*",), {INVENTORY: "chime/datatrail-daemons_inventory"})
    config = Config(path=None, refresh=3600.0, timeout=2.0, buckets=buckets)
    return DtmonApp(config, collectors=world(chime(), kko()), clock=frozen_clock)


def seed(server) -> None:
    server.store.add(KKO, 4)
    server.store.add(KKO, 2, "success")
    server.store.add(INVENTORY, 2)  # chime's inventory is down in the fake world
    server.store.add(HEAL, 1, "running")


def cell(table: BucketsTable, key: str, column: str) -> str:
    return str(table.get_cell(key, column))


async def test_buckets_tab_at_80x24_is_one_key_away(buckets_server):
    seed(buckets_server)
    app = make_app(buckets_server.url)
    async with app.run_test(size=(80, 24)) as pilot:
        pane = app.query_one(BucketsPane)
        await until(pilot, lambda: pane.polls >= 1 and app.polls >= 2)
        await pilot.pause()
        views = app.query_one(Views)
        assert views.tabbed is True
        assert app.query_one(ServicesTable).display and not pane.display
        tab = app.query_one("#tab-buckets-pane")
        assert str(tab.label) == "2 buckets !1"  # the problem shows while the tab is hidden

        await pilot.press("2")
        assert pane.display and not app.query_one(ServicesTable).display
        table = pane.table
        assert app.focused is table
        keys = [table.coordinate_to_cell_key((i, 0))[0].value for i in range(table.row_count)]
        assert keys == [INVENTORY, HEAL, KKO]  # the problem first
        assert cell(table, INVENTORY, "bucket").startswith(PROBLEM_MARK)
        assert cell(table, INVENTORY, "consumer") == "down chime/inventory"  # compact: consumer and state in one
        assert cell(table, KKO, "queued") == "4" and cell(table, KKO, "consumer") == "kko/replicator"

        # New work arrives; `r` polls again and the row changes in place.
        buckets_server.store.add(KKO, 3)
        await pilot.press("r")
        await until(pilot, lambda: pane.polls >= 2)
        await pilot.pause()
        assert cell(table, KKO, "queued") == "7"
        assert pane.report.buckets[-1].history == (4, 7)

        await pilot.press("1")
        assert app.query_one(ServicesTable).display and not pane.display
        assert app.focused is app.query_one(ServicesTable)


async def test_buckets_beside_the_services_when_large_and_a_dead_source(buckets_server):
    seed(buckets_server)
    app = make_app(buckets_server.url)
    async with app.run_test(size=(160, 48)) as pilot:
        pane = app.query_one(BucketsPane)
        await until(pilot, lambda: pane.polls >= 1)
        await pilot.pause()
        assert app.query_one(Views).tabbed is False
        services = app.query_one(ServicesTable)
        assert services.display and pane.display
        assert services.region.height > 0 and pane.region.height > 0
        assert pane.region.y >= services.region.bottom  # stacked under the services
        assert pane.table.compact is False

        buckets_server.fault = "500"
        await pilot.press("r")
        await until(pilot, lambda: pane.polls >= 2)
        await pilot.pause()
        summary = app.query_one("#buckets-summary")
        assert summary.has_class("-unreachable")
        assert f"{buckets_server.url}/status/pipelines: HTTP 500" in str(summary.render())
        assert pane.table.row_count == 3  # last good data stays


async def test_three_views_each_one_key_away_at_80x24(buckets_server):
    """With the progress pane too: 1, 2, 3 switch views; the tab badges stay visible from any view."""
    import socket

    from dtmon.config import PrometheusConfig

    with socket.socket() as sock:  # a loopback port nobody listens on: Prometheus is "down"
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    seed(buckets_server)
    app = make_app(buckets_server.url)
    app.config = Config(path=None, refresh=3600.0, timeout=2.0, buckets=app.config.buckets,
                        prometheus=PrometheusConfig(dead))
    async with app.run_test(size=(80, 24)) as pilot:
        views = app.query_one(Views)
        await until(pilot, lambda: len(views.views) == 3 and app.query_one(BucketsPane).polls >= 1)
        panes = views.views
        for key, index in (("3", 2), ("2", 1), ("1", 0), ("3", 2)):
            await pilot.press(key)
            assert [v.display for v in panes] == [i == index for i in range(3)], key
        await pilot.press("4")  # no fourth view: nothing changes
        assert [v.display for v in panes] == [False, False, True]
        assert str(app.query_one("#tab-buckets-pane").label) == "2 buckets !1"


async def test_filter_key_on_the_buckets_tab_brings_the_services_back(buckets_server):
    seed(buckets_server)
    app = make_app(buckets_server.url)
    async with app.run_test(size=(80, 24)) as pilot:
        pane = app.query_one(BucketsPane)
        await until(pilot, lambda: pane.polls >= 1)
        await pilot.press("2")
        assert pane.display and not app.query_one(ServicesTable).display
        await pilot.press("slash")
        assert app.query_one(ServicesTable).display and not pane.display
        assert app.focused is app.query_one("#filter")


async def test_at_120_columns_every_bucket_column_fits_and_the_consumer_reads_whole(buckets_server):
    # The wide columns need ~153 cells: at 120 they ran off the right edge and the state read "runn".
    seed(buckets_server)
    app = make_app(buckets_server.url)
    async with app.run_test(size=(120, 40)) as pilot:
        pane = app.query_one(BucketsPane)
        await until(pilot, lambda: pane.polls >= 1 and app.polls >= 2)
        await pilot.pause()
        table = pane.table
        if not pane.display:
            await pilot.press("2")
            await pilot.pause()
        used = sum(column.get_render_width(table) for column in table.columns.values())
        assert used <= table.size.width, (used, table.size.width)
        assert cell(table, INVENTORY, "consumer") == "down chime/inventory"
        assert cell(table, KKO, "consumer") == "kko/replicator"
