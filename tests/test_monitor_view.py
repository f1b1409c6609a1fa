"""The monitoring view: open incidents first, names as text only, fits 1024 px; the widget and the marked chart."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from workbench import simulation as sim

try:
    from ._browser import PageLog, artifact, chromium
except ImportError:
    from _browser import PageLog, artifact, chromium

DAY = datetime(2026, 11, 25, tzinfo=timezone.utc)
HOSTILE = "support</script><script>alert(1)</script> <img src=x onerror=alert(2)> $x$"


@pytest.fixture
def monitored(bench):
    """Two scopes; the hostile-named one had an incident at 07:00 (resolved) and has one since 14:00 (open at 14:30)."""
    streams = [sim.Stream(prompt_name=HOSTILE, calls_per_minute=12), sim.Stream(model="claude-sonnet-4-5", calls_per_minute=6)]
    incidents = [sim.Incident(start_hour=7, hours=1, error_rate=0.3, scope={"prompt_name": HOSTILE}),
                 sim.Incident(start_hour=14, hours=2, latency_factor=2.5, scope={"prompt_name": HOSTILE})]
    sim.labelled_traffic(start=DAY, days=1, seed=9, streams=streams, incidents=incidents).write(bench)
    bench.monitor.replay(DAY + timedelta(hours=6, minutes=30), DAY + timedelta(hours=14, minutes=30), store=True)
    return bench.monitor.view(now=DAY + timedelta(hours=14, minutes=30))


def test_open_incidents_come_first_and_names_stay_text(monitored):
    html = monitored._repr_html_()
    assert html.startswith('<div class="wb-out tex2jax_ignore mathjax_ignore wb-mon"')
    assert "<script>" not in html and "<img" not in html and "$x$" not in html
    assert "&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in html and "&#36;x&#36;" in html
    assert html.index("Open incidents") < html.index("Scopes, last 24 h") < html.index("Resolved in the last 24 h")
    assert monitored.open.height == 1 and monitored.open["rule"][0] == "latency"
    assert monitored.resolved.height == 1 and monitored.resolved["rule"][0] == "error_rate"
    # The scope with the open incident is listed first, with both its incidents counted.
    first = monitored.scopes[0]
    assert first["scope"]["prompt_name"] == HOSTILE and first["open"] == ["latency"] and first["resolved"] == 1
    assert monitored.scopes[1]["open"] == [] and monitored.scopes[1]["scope"]["model"] == "claude-sonnet-4-5"
    # The incidents are shaded on the sparklines of their metrics.
    assert set(first["spans"]) == {"error_rate", "latency_p95"}
    assert 'fill="#c9372c"' in html
    assert "1 open incident" in html and "OPEN latency" in repr(monitored)


def test_an_empty_file_says_there_is_nothing_to_watch(bench):
    view = bench.monitor.view(now=DAY)
    html = view._repr_html_()
    assert "no open incidents" in html and "No production calls in this period" in html
    assert view.scopes == []


def test_the_widget_checks_and_redraws_from_python(bench):
    sim.labelled_traffic(start=DAY, days=1, seed=9, streams=[sim.Stream(calls_per_minute=12)],
                         incidents=[sim.Incident(start_hour=14, hours=1, error_rate=0.3)]).write(bench)
    box = bench.monitor.widget(now=DAY + timedelta(hours=14, minutes=20))
    (check, refresh, status), view = box.children[0].children, box.children[1]
    assert "no open incidents" in view.value
    check.click()
    assert "1 opened" in status.value and "1 open incident" in view.value
    assert view.value.startswith('<div class="wb-out') and status.value.startswith('<div class="wb-out')
    refresh.click()
    assert "1 open incident" in view.value


def test_the_chart_marks_each_alert(bench):
    sim.labelled_traffic(start=DAY, days=1, seed=9, streams=[sim.Stream(calls_per_minute=12)],
                         incidents=[sim.Incident(start_hour=14, hours=1, error_rate=0.3)]).write(bench)
    bench.monitor.replay(DAY + timedelta(hours=12), DAY + timedelta(hours=18), store=True)
    chart = bench.monitor.chart(now=DAY + timedelta(days=1), hours=24, fields=("requests", "error_rate"))
    spec = chart.to_dict()
    assert "1 alert" in spec["title"]["subtitle"]
    assert len(spec["vconcat"]) == 2 and all(p["layer"][0]["mark"]["type"] == "rect" for p in spec["vconcat"])
    spans = spec["datasets"][spec["vconcat"][0]["layer"][0]["data"]["name"]]
    assert [(s["rule"], s["status"]) for s in spans] == [("error_rate", "resolved")]
    assert spans[0]["start"].startswith("2026-11-25T14:")


@pytest.mark.browser
def test_the_view_reads_well_at_1280_and_1024_px(monitored):
    page_html = f"<!doctype html><html><head><meta charset='utf-8'></head><body>{monitored._repr_html_()}</body></html>"
    path = artifact("monitor_view.html")
    path.write_text(page_html, encoding="utf-8")
    with chromium() as browser:
        for width in (1280, 1024):
            page = browser.new_page(viewport={"width": width, "height": 800})
            log = PageLog(page)
            page.goto(path.as_uri())
            page.wait_for_selector(".wb-mon table", timeout=30_000)
            page.screenshot(path=str(artifact(f"monitor_view_{width}.png")), full_page=True)
            overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, f"the view is {overflow} px wider than {width} px"
            first_card = page.inner_text(".wb-mon .card .what")
            assert HOSTILE.split(" ")[0] in first_card  # shown as the text it is
            assert page.locator(".wb-mon svg polyline").count() >= 10
            assert not log.dialogs and not log.page_errors and not log.console_errors, log.summary()
            assert log.non_local_requests() == []
            page.close()
