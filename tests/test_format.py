"""Pure formatting and diffing: ages, chips, rows, filters, row diffs, task rows, log tails."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from tui_fakes import NOW, chime, gbo_stale, kko, svc, tasks_for, with_service

from dtmon import format as fmt
from dtmon.model import SiteStatus


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(-5, "0s"), (0, "0s"), (59.9, "59s"), (60, "1m"), (3599, "59m"), (3600, "1h"), (86399, "23h"), (86400, "1d"),
     (10 * 86400, "10d")],
)
def test_age(seconds, text):
    assert fmt.age(seconds) == text


def test_coarse_age_has_minute_resolution():
    # Table cells must not change every second: everything under a minute reads the same.
    assert {fmt.coarse_age(s) for s in (0, 1, 30, 59)} == {"<1m"}
    assert fmt.coarse_age(61) == "1m"
    assert fmt.since(None, NOW) == ""
    assert fmt.since(NOW - timedelta(seconds=5), NOW, coarse=False) == "5s"


def test_latency():
    assert fmt.latency(None) == ""
    assert fmt.latency(12.34) == "12ms"
    assert fmt.latency(1534) == "1.5s"


@pytest.mark.parametrize(
    ("shown", "measured", "expected"),
    [(None, 12.0, 12.0), (12.0, None, None), (12.0, 15.0, 12.0), (12.0, 18.0, 18.0), (100.0, 125.0, 100.0),
     (100.0, 140.0, 140.0), (100.0, 60.0, 60.0)],
)
def test_steady_latency(shown, measured, expected):
    assert fmt.steady_latency(shown, measured) == expected


def test_chips_say_state_latency_and_age():
    ok = fmt.site_chip(kko(), NOW)
    assert (ok.text, ok.state) == ("kko ✓ 48ms 1s", "ok")
    problems = fmt.site_chip(chime(), NOW)
    assert (problems.text, problems.state) == ("chime ▲3 12ms 2s", "problems")
    stale = fmt.site_chip(gbo_stale(), NOW)
    assert (stale.text, stale.state) == ("gbo ✗ 6m", "unreachable")
    pending = fmt.site_chip(SiteStatus("hco", False), NOW)
    assert pending.state == "pending"
    never = fmt.site_chip(SiteStatus("hco", False, error="connection failed"), NOW)
    assert (never.text, never.state) == ("hco ✗ no data", "unreachable")


def test_chip_shows_the_age_only_once_the_data_is_late():
    # kko was polled 1 s ago: with polls every 5 s (+5 s timeout) that is not late, so no ticking age.
    assert fmt.site_chip(kko(), NOW, late_after=10).text == "kko ✓ 48ms"
    late = replace(kko(), polled_at=NOW - timedelta(seconds=12))
    assert fmt.site_chip(late, NOW, late_after=10).text == "kko ✓ 48ms 12s"
    # Unreachable sites always say how old their data is.
    assert fmt.site_chip(gbo_stale(), NOW, late_after=3600).text == "gbo ✗ 6m"


def test_rows_are_grouped_site_stack_service_with_stable_keys():
    rows = fmt.build_rows([chime(), kko()], NOW)
    keys = [r.key for r in rows]
    assert keys[0] == "site:chime"
    assert keys[1] == "stack:chime/datatrail"
    assert keys.index("site:kko") > keys.index("chime/datatrail-client_replicator")
    assert "kko/datatrail-client_replicator" in keys
    kinds = {r.key: r.kind for r in rows}
    assert kinds["stack:kko/datatrail-client"] == "stack"
    assert kinds["chime/datatrail-daemons_inventory"] == "service"
    # Every row of a stack follows its stack row, and every service appears once.
    assert len(keys) == len(set(keys))
    assert sum(1 for r in rows if r.kind == "service") == len(chime().services) + len(kko().services)


def test_problems_sort_first_within_their_stack():
    rows = fmt.build_rows([chime()], NOW)
    daemons = [r.service.service for r in rows if r.kind == "service" and r.service.stack == "datatrail-daemons"]
    assert daemons[:2] == ["inventory", "replication_stager_kko"]
    assert daemons[2:] == sorted(daemons[2:])
    client = [r.service.service for r in rows if r.kind == "service" and r.service.stack == "datatrail-client"]
    assert client[0] == "update_canfar_certificates"  # missing


def cell(row: fmt.Row, column: str, compact: bool = False) -> fmt.Cell:
    index = [c.key for c in fmt.columns(compact)].index(column)
    return row.cells[index]


def test_service_cells_and_tones():
    rows = {r.key: r for r in fmt.build_rows([chime()], NOW)}
    inventory = rows["chime/datatrail-daemons_inventory"]
    assert cell(inventory, "replicas").text == "0/1"
    assert cell(inventory, "state") == fmt.Cell("down", fmt.ERROR, bold=True)
    assert cell(inventory, "failed") == fmt.Cell("4", fmt.ERROR)
    assert cell(inventory, "error").text == "3m ago · task: non-zero exit (1)"
    assert cell(inventory, "tag").text == "v3.4.1"
    assert cell(inventory, "updated").text == "2h"
    degraded = rows["chime/datatrail-daemons_replication_stager_kko"]
    assert cell(degraded, "state").tone == fmt.WARNING
    assert cell(degraded, "replicas") == fmt.Cell("1/2", fmt.WARNING)
    unexpected = rows["chime/datatrail-daemons_debug_shell"]
    assert cell(unexpected, "service").text.startswith("? ")
    assert cell(unexpected, "error").text == "not in the compose file"
    missing = rows["chime/datatrail-client_update_canfar_certificates"]
    assert cell(missing, "replicas").text == "-/1"
    assert cell(missing, "state").tone == fmt.ERROR
    stack = rows["stack:chime/datatrail-daemons"]
    assert cell(stack, "state").text == "down"  # the stack's worst state
    assert cell(stack, "replicas").text == "5/7"
    site = rows["site:chime"]
    # How many services need attention, not the worst state ("down" would read as if the site were down).
    assert cell(site, "state") == fmt.Cell("3 problems", fmt.ERROR, bold=True)
    assert cell(site, "error").text == "of 15: 1 down, 1 missing, 1 degraded"


def test_compact_rows_drop_columns():
    rows = fmt.build_rows([chime()], NOW, fmt.View(compact=True))
    assert all(len(r.cells) == len(fmt.COMPACT_COLUMNS) for r in rows)
    assert len(fmt.COMPACT_COLUMNS) < len(fmt.WIDE_COLUMNS)
    inventory = next(r for r in rows if r.key == "chime/datatrail-daemons_inventory")
    assert cell(inventory, "error", compact=True).text == "3m task: non-zero exit (1)"
    # The compact columns fit 80 columns with room for the error.
    used = sum(c.width + 2 for c in fmt.COMPACT_COLUMNS if c.width)
    assert 80 - used - 3 >= 20


def test_stale_site_rows_are_dimmed_and_say_since_when():
    rows = fmt.build_rows([gbo_stale()], NOW)
    site = rows[0]
    assert site.key == "site:gbo"
    assert cell(site, "state") == fmt.Cell("unreachable", fmt.ERROR, bold=True)
    assert cell(site, "error").text == "connection failed: connection refused · for 5m · data 6m old"
    compact = fmt.build_rows([gbo_stale()], NOW, fmt.View(compact=True))[0]
    assert cell(compact, "error", compact=True).text == "for 5m: connection failed: connection refused"
    others = rows[1:]
    assert others and all(c.tone == fmt.MUTED for r in others for c in r.cells)


def test_filter_matches_site_stack_service_and_state():
    sites = [chime(), kko()]
    by_service = fmt.build_rows(sites, NOW, fmt.View(filter="INVENT"))
    assert [r.key for r in by_service] == [
        "site:chime", "stack:chime/datatrail-daemons", "chime/datatrail-daemons_inventory"]
    by_site = fmt.build_rows(sites, NOW, fmt.View(filter="kko"))
    # "kko" is a site and part of a chime service name (autossh_kko, replication_stager_kko).
    services = {r.key for r in by_site if r.kind == "service"}
    assert {s.key for s in kko().services} <= services
    assert "chime/datatrail_autossh_kko" in services
    assert "chime/datatrail_server" not in services
    by_state = fmt.build_rows(sites, NOW, fmt.View(filter="degraded"))
    assert [r.key for r in by_state if r.kind == "service"] == ["chime/datatrail-daemons_replication_stager_kko"]
    assert fmt.build_rows(sites, NOW, fmt.View(filter="no-such-thing")) == []


def test_problems_only_keeps_problems_and_unreachable_sites():
    rows = fmt.build_rows([chime(), kko(), gbo_stale()], NOW, fmt.View(problems_only=True))
    services = [r.key for r in rows if r.kind == "service"]
    assert set(services[:3]) == {
        "chime/datatrail-daemons_inventory",
        "chime/datatrail-daemons_replication_stager_kko",
        "chime/datatrail-client_update_canfar_certificates",
    }
    assert "site:kko" not in {r.key for r in rows}  # healthy site: nothing to show
    assert "site:gbo" in {r.key for r in rows}  # unreachable: a problem in itself
    assert not any(k.startswith("gbo/") for k in services)  # but its healthy (if stale) services stay hidden
    assert "stack:chime/datatrail" not in {r.key for r in rows}


def test_folded_stacks_show_their_group_row_alone_unless_filtering():
    folded = frozenset({"stack:chime/datatrail-daemons"})
    rows = fmt.build_rows([chime()], NOW, fmt.View(folded=folded))
    keys = [r.key for r in rows]
    assert "stack:chime/datatrail-daemons" in keys
    assert not any(k.startswith("chime/datatrail-daemons_") for k in keys)
    stack = next(r for r in rows if r.key == "stack:chime/datatrail-daemons")
    assert stack.cells[0].text == "▸ datatrail-daemons" and cell(stack, "state").text == "down"
    assert next(r for r in rows if r.key == "stack:chime/datatrail").cells[0].text == "▾ datatrail"
    filtered = fmt.build_rows([chime()], NOW, fmt.View(folded=folded, filter="inventory"))
    assert "chime/datatrail-daemons_inventory" in [r.key for r in filtered]


def test_diff_touches_only_changed_cells():
    before = fmt.build_rows([chime()], NOW)
    changed_site = with_service(chime(), "chime/datatrail-daemons_replication_stager_kko", running=2, state="running",
                                error=None, error_at=None)
    after = fmt.build_rows([changed_site], NOW)
    diff = fmt.diff_rows(before, after)
    assert not diff.added and not diff.removed
    changed_keys = {key for key, _, _ in diff.changed}
    assert changed_keys == {
        "chime/datatrail-daemons_replication_stager_kko",  # replicas, state, error
        "stack:chime/datatrail-daemons",  # 6/7 and "1 problem of 6"
        "site:chime",  # 14/16 and "2 problems of 15"
    }
    columns = [c.key for c in fmt.WIDE_COLUMNS]
    svc_cols = {columns[i] for key, i, _ in diff.changed if key == "chime/datatrail-daemons_replication_stager_kko"}
    assert svc_cols == {"replicas", "state", "error"}
    assert diff.reorder  # it is healthy now, so it sorts among the healthy ones
    assert fmt.diff_rows(after, after).empty


def test_diff_adds_and_removes_rows_and_reports_reorder_only_when_needed():
    base = fmt.build_rows([kko()], NOW)
    extra_stack = replace(kko().stacks[0], services=kko().stacks[0].services + (svc("kko", "datatrail-client", "zz_new"),))
    grown = fmt.build_rows([replace(kko(), stacks=(extra_stack,))], NOW)
    diff = fmt.diff_rows(base, grown)
    assert [r.key for r in diff.added] == ["kko/datatrail-client_zz_new"]
    assert not diff.reorder  # appended at the end: already in place
    back = fmt.diff_rows(grown, base)
    assert back.removed == ("kko/datatrail-client_zz_new",)
    first = replace(kko().stacks[0], services=kko().stacks[0].services + (svc("kko", "datatrail-client", "aa_new"),))
    diff = fmt.diff_rows(base, fmt.build_rows([replace(kko(), stacks=(first,))], NOW))
    assert diff.reorder  # "aa_new" sorts before the others


def test_ages_in_rows_change_at_most_once_a_minute():
    rows = [fmt.build_rows([chime()], NOW + timedelta(seconds=s)) for s in range(0, 50, 5)]
    for a, b in zip(rows, rows[1:]):
        assert fmt.diff_rows(a, b).empty


def test_task_rows_put_history_under_the_current_task():
    service = chime().services[0]
    rows = fmt.task_rows(tasks_for(service).tasks, NOW)
    assert [r.key for r in rows] == ["t-new", "t-old"]
    assert [r.kind for r in rows] == ["task", "history"]
    current, history = rows
    assert [c.text for c in current.cells[:5]] == ["1", "frb-vsop", "running", "running", "2m"]
    assert history.cells[0].text == ""  # slot shown once
    assert history.cells[5].text == "task: non-zero exit (1)"  # the exit code is already in the error
    other = replace(tasks_for(service).tasks[1], error="oom killed", exit_code=137)
    assert fmt.task_rows([other], NOW)[0].cells[5].text == "oom killed (exit 137)"
    assert all(c.tone == fmt.MUTED for c in history.cells)


@pytest.mark.parametrize(
    ("shown", "fetched", "expected"),
    [
        ([], [], ("same", [])),
        (["a", "b"], ["a", "b"], ("same", [])),
        ([], ["a"], ("append", ["a"])),
        (["a", "b", "c"], ["b", "c", "d", "e"], ("append", ["d", "e"])),
        (["x", "a", "b"], ["a", "b"], ("append", [])),
        (["a", "b"], ["q", "r"], ("replace", ["q", "r"])),
        (["a", "b"], [], ("replace", [])),
    ],
)
def test_log_update(shown, fetched, expected):
    assert fmt.log_update(shown, fetched) == expected


def test_summary_names_counts_and_filters():
    sites = [chime(), kko(), gbo_stale()]
    assert fmt.summary(sites, fmt.View(), 0) == "27 services · 3 problems · 1 site unreachable"
    text = fmt.summary(sites, fmt.View(filter="kko", problems_only=True), 4)
    assert text.endswith('filter "kko" (4 rows) · problems only')


@pytest.mark.parametrize("error", [None, "not polled yet"])
def test_a_site_not_polled_yet_is_waiting_not_unreachable(error):
    # The dashboard starts every site as SiteStatus(reachable=False) until its first poll comes back.
    (row,) = fmt.build_rows([SiteStatus("hco", False, error=error)], NOW)
    assert cell(row, "state") == fmt.Cell("…", None)
    assert cell(row, "error") == fmt.Cell("waiting for the first poll")
    assert fmt.site_chip(SiteStatus("hco", False, error=error), NOW).state == "pending"
    # Once a poll has failed it is unreachable, data or none.
    (failed,) = fmt.build_rows([SiteStatus("hco", False, error="connection failed")], NOW)
    assert cell(failed, "state").text == "unreachable"
    assert cell(failed, "error").text == "connection failed · no data yet"


def test_summary_counts_sites_that_never_answered_but_not_those_still_waiting():
    never = SiteStatus("hco", False, error="connection failed")
    waiting = SiteStatus("gbo", False)
    assert fmt.summary([kko(), never, waiting], fmt.View(), 0) == "6 services · 0 problems · 1 site unreachable"
    assert fmt.summary([kko(), never, gbo_stale()], fmt.View(), 0).endswith(" · 2 sites unreachable")


def test_a_crash_loop_row_says_how_long_and_how_many():
    looping = with_service(chime(), "chime/datatrail-daemons_inventory", state="crashloop", running=1,
                           failed_recent=4, failed_capped=True, looping_since=NOW - timedelta(minutes=25))
    rows = {r.key: r for r in fmt.build_rows([looping], NOW)}
    row = rows["chime/datatrail-daemons_inventory"]
    assert cell(row, "state") == fmt.Cell("crashloop", fmt.ERROR, bold=True)
    assert cell(row, "failed") == fmt.Cell("≥4", fmt.ERROR)
    # The history is full (capped): the loop began before its oldest failure, so its length is a lower bound too.
    assert cell(row, "error") == fmt.Cell("looping ≥25m · 3m ago · task: non-zero exit (1)", fmt.ERROR)
    compact = {r.key: r for r in fmt.build_rows([looping], NOW, fmt.View(compact=True))}
    assert cell(compact["chime/datatrail-daemons_inventory"], "error", compact=True).text == (
        "looping ≥25m · 3m task: non-zero exit (1)")
    exact = with_service(looping, "chime/datatrail-daemons_inventory", failed_capped=False, failed_recent=3)
    row = next(r for r in fmt.build_rows([exact], NOW) if r.key == "chime/datatrail-daemons_inventory")
    assert cell(row, "error").text == "looping 25m · 3m ago · task: non-zero exit (1)"
    assert cell(row, "failed").text == "3"
    # Ranked with the problems: right after down, before missing and degraded.
    assert fmt.sort_services(looping.services)[0].state == "crashloop"
    assert cell(rows["site:chime"], "error").text == "of 15: 1 crashloop, 1 missing, 1 degraded"


def test_a_healthy_services_old_error_is_dimmed():
    recovered = with_service(chime(), "chime/datatrail-daemons_inventory", state="running", running=1,
                             failed_recent=0, error_at=NOW - timedelta(hours=2))
    view = fmt.View(error_max_age=3600)
    row = next(r for r in fmt.build_rows([recovered], NOW, view) if r.key == "chime/datatrail-daemons_inventory")
    assert cell(row, "error") == fmt.Cell("2h ago · task: non-zero exit (1)", fmt.MUTED)
    # Younger than the age, it is shown plainly (not red: the service runs); a problem's error is never dimmed.
    row = next(r for r in fmt.build_rows([recovered], NOW, fmt.View(error_max_age=3 * 3600))
               if r.key == "chime/datatrail-daemons_inventory")
    assert cell(row, "error").tone is None
    down = with_service(chime(), "chime/datatrail-daemons_inventory", error_at=NOW - timedelta(hours=2))
    row = next(r for r in fmt.build_rows([down], NOW, view) if r.key == "chime/datatrail-daemons_inventory")
    assert cell(row, "error").tone == fmt.ERROR


def test_a_site_with_no_problem_says_ok():
    row = fmt.build_rows([kko()], NOW)[0]
    assert cell(row, "state") == fmt.Cell("ok", fmt.SUCCESS, bold=True)
    assert cell(row, "error").text == f"{len(kko().services)} services"


def test_chip_shows_latency_only_when_slow():
    """Below slow_poll_ms the latency is not on the chip: a jittering figure would repaint it every poll."""
    assert "48ms" not in fmt.site_chip(kko(), NOW, late_after=10, slow_after_ms=500).text
    assert fmt.site_chip(kko(), NOW, late_after=10, slow_after_ms=500).text == "kko ✓"
    assert fmt.site_chip(kko(), NOW, late_after=10, slow_after_ms=40).text == "kko ✓ 48ms"
