"""Notifications: the Slack-compatible webhook against a local HTTP server, retries, timeouts, never blocking."""

from __future__ import annotations

import json
import threading
from collections import deque
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from workbench import simulation as sim
from workbench.errors import ConfigError, NotificationError
from workbench.monitor import AlertEvent, ErrorRateSpike, Webhook, slack_body

DAY = datetime(2026, 11, 25, tzinfo=timezone.utc)


class Hook:
    """A local webhook endpoint: answers from a script of status codes, or hangs until released."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self.statuses: deque[int] = deque()
        self.hang = threading.Event()  # set: requests wait on `release` before answering
        self.release = threading.Event()
        self.arrived = threading.Event()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length", 0))
                hook.bodies.append(json.loads(self.rfile.read(length)))
                hook.arrived.set()
                if hook.hang.is_set():
                    hook.release.wait(60)
                status = hook.statuses.popleft() if hook.statuses else 200
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:
                    pass  # the client gave up (its timeout)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/services/T000/B000/secret"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook():
    h = Hook()
    yield h
    h.close()


def _event(event: str = "opened", scope: dict | None = None) -> AlertEvent:
    return AlertEvent(
        event=event, alert_id="a1", rule="error_rate", kind="error_rate", metric="error_rate",
        scope=scope or {"prompt_name": "support", "model": "claude-haiku-4-5"},
        first_seen=DAY, last_seen=DAY + timedelta(minutes=30),
        resolved_at=DAY + timedelta(hours=1) if event == "resolved" else None,
        observed=0.12, baseline=0.01, peak=0.2, p_value=1e-9, statistic="60 errors in 500 calls (12.0%) ...",
        window_minutes=15,
    )


@pytest.fixture
def incident(bench):
    """An error incident from 14:00 to 15:00 in the file, and the check times around it."""
    traffic = sim.labelled_traffic(start=DAY, days=1, seed=8, streams=[sim.Stream(calls_per_minute=12)],
                                   incidents=[sim.Incident(start_hour=14, hours=1, error_rate=0.3)])
    traffic.write(bench)
    bench.monitor.set_rules([ErrorRateSpike()])
    return [DAY + timedelta(hours=13, minutes=55) + timedelta(minutes=i) for i in range(100)]


def test_webhook_posts_a_slack_body(hook):
    attempts = Webhook(hook.url)(_event())
    assert attempts == 1
    body = hook.bodies[0]
    assert body["text"].startswith("Incident: error_rate on prompt_name=support, model=claude-haiku-4-5: 12.0% against 1.0%")
    assert body["blocks"][0] == {"type": "header", "text": {"type": "plain_text", "text": "Incident: error_rate on prompt_name=support, model=claude-haiku-4-5"}}
    fields = {f["text"].split("\n")[0]: f["text"].split("\n")[1] for f in body["blocks"][1]["fields"]}
    assert fields == {"*observed*": "12.0%", "*baseline*": "1.0%", "*since*": "2026-11-25 00:00 UTC"}


def test_user_controlled_names_cannot_ping_a_channel():
    body = slack_body(_event(scope={"user_id": "<!channel> & <@U123>"}))
    assert "<!channel>" not in json.dumps(body) and "&lt;!channel&gt; &amp; &lt;@U123&gt;" in body["text"]


def test_resolved_events_say_how_long_and_how_bad():
    body = slack_body(_event("resolved"))
    assert body["text"].startswith("Resolved: error_rate on prompt_name=support, model=claude-haiku-4-5 after 1 h 0 min")
    assert "worst 20.0%" in body["text"]


def test_webhook_retries_5xx_and_429_then_delivers(hook):
    hook.statuses.extend([500, 429, 503])
    assert Webhook(hook.url, retries=3, backoff=0.01)(_event()) == 4
    assert len(hook.bodies) == 4


def test_webhook_gives_up_on_4xx_at_once(hook):
    hook.statuses.extend([404, 404])
    with pytest.raises(NotificationError, match="HTTP 404 .* not retried") as err:
        Webhook(hook.url, retries=3, backoff=0.01)(_event())
    assert err.value.attempts == 1 and len(hook.bodies) == 1


def test_webhook_times_out_on_a_hanging_endpoint(hook):
    hook.hang.set()
    with pytest.raises(NotificationError, match="gave up after 2 attempts") as err:
        Webhook(hook.url, timeout=0.3, retries=1, backoff=0.01)(_event())
    assert err.value.attempts == 2


def test_webhook_to_a_closed_port_fails_cleanly():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(NotificationError, match="gave up after 1 attempts"):
        Webhook(f"http://127.0.0.1:{port}/hook", timeout=0.5, retries=0)(_event())


def test_webhook_urls_are_checked_and_never_shown_whole():
    with pytest.raises(ConfigError, match="http\\(s\\) URL"):
        Webhook("hooks.slack.com/services/x")
    hook = Webhook("https://hooks.slack.com/services/T0/B0/secret-token")
    assert "secret-token" not in repr(hook) and hook.channel == "webhook hooks.slack.com"


def test_deliveries_are_recorded_with_their_attempts(bench, hook, incident):
    hook.statuses.extend([502])
    bench.monitor.notify(hook.url, backoff=0.01)
    for t in incident:
        bench.monitor.check(now=t)
    assert bench.monitor.drain(30)
    log = bench.store.query("SELECT event, channel, status, attempts FROM alert_notifications ORDER BY at")
    channel = f"webhook 127.0.0.1:{hook.server.server_address[1]}"
    assert log == [
        {"event": "opened", "channel": channel, "status": "sent", "attempts": 2},
        {"event": "resolved", "channel": channel, "status": "sent", "attempts": 1},
    ]
    assert [b["text"].split(":")[0] for b in hook.bodies] == ["Incident", "Incident", "Resolved"]


def test_a_hanging_endpoint_never_blocks_checks_or_tracing(bench, hook, incident):
    hook.hang.set()
    bench.monitor.notify(hook.url, timeout=30, retries=0)
    opened_at = None
    for t in incident:
        result = bench.monitor.check(now=t)
        if result.opened:
            opened_at = t
            assert hook.arrived.wait(30)  # the webhook is now stuck inside the endpoint ...
    # ... and every later check ran anyway, and so does tracing.
    assert opened_at is not None and not hook.release.is_set()
    assert bench.monitor.alerts()["status"].to_list() == ["resolved"]
    answer = bench.complete(model="claude-haiku-4-5", messages=[{"role": "user", "content": "Still working?"}])
    bench.flush()
    assert bench.trace(answer.trace_id) is not None
    assert bench.monitor._dispatcher.pending >= 1
    hook.release.set()
    assert bench.monitor.drain(30)
    assert len(hook.bodies) == 2


def test_a_failing_callable_is_recorded_and_does_not_stop_the_others(bench, incident):
    got = []

    def broken(event):
        raise RuntimeError("smtp server said no")

    bench.monitor.notify(broken).notify(got.append)
    with pytest.warns(RuntimeWarning, match="could not notify broken .*smtp server said no"):
        for t in incident:
            bench.monitor.check(now=t)
        bench.monitor.drain(30)
    assert [e.event for e in got] == ["opened", "resolved"]
    failed = bench.store.query("SELECT channel, status, error FROM alert_notifications WHERE status = 'failed'")
    assert [(r["channel"], r["error"]) for r in failed] == [("broken", "RuntimeError: smtp server said no")] * 2
