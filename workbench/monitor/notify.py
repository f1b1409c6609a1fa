"""Notifications: a Python callable, or a webhook with a Slack-compatible body.

Every notification is sent from one background thread per monitor, so a
slow or dead endpoint never holds up a check, the watch loop or tracing
(which never touches this module). The webhook retries connection errors,
timeouts, 429 and 5xx with backoff, each attempt bounded by ``timeout``;
the outcome of every delivery is stored in ``alert_notifications``. E-mail
is a callable away (see the README: ``smtplib`` in ten lines).

Delivery is at most once per event: a process that dies with a message still
queued does not send it later (the alert itself is in the file either way).
"""

from __future__ import annotations

import json
import queue
import random
import threading
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from ..errors import ConfigError, NotificationError
from .alerts import AlertEvent, metric_text

QUEUE_LIMIT = 1_000
"""Messages waiting at most; beyond it new ones are recorded as failed, never block."""


def _slack_escape(text: str) -> str:
    # Slack reads &, < and > as markup (links, mentions) and decodes these three
    # entities for display in every text field: a scope value such as a user id
    # must show as text, never as a <!channel> ping.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_body(event: AlertEvent) -> dict[str, Any]:
    """A Slack incoming-webhook body: ``text`` (the fallback line) and Block Kit ``blocks``."""
    if event.event == "resolved":
        title = f"Resolved: {event.rule} on {event.scope_text}"
    else:
        title = f"Incident: {event.rule} on {event.scope_text}"
    fields = [
        ("observed", metric_text(event.metric, event.observed)),
        ("baseline", metric_text(event.metric, event.baseline)),
        ("since", event.first_seen.strftime("%Y-%m-%d %H:%M UTC")),
    ]
    if event.event == "resolved" and event.resolved_at is not None:
        fields.append(("resolved", event.resolved_at.strftime("%Y-%m-%d %H:%M UTC")))
        fields.append(("worst", metric_text(event.metric, event.peak)))
    return {
        "text": _slack_escape(event.text()),
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": _slack_escape(title)[:150]}},
            {"type": "section", "fields": [
                {"type": "mrkdwn", "text": f"*{name}*\n{_slack_escape(value)}"} for name, value in fields
            ]},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": _slack_escape(event.statistic[:2900] or event.kind)}]},
        ],
    }


@dataclass
class Webhook:
    """POST each event as JSON (Slack-compatible by default) to ``url``.

    Args:
        url: an http(s) URL, e.g. a Slack incoming webhook.
        timeout: seconds per attempt (connect and read).
        retries: attempts after the first, for connection errors, timeouts, 408, 429 and 5xx.
        backoff: seconds before the first retry, doubling (with jitter); a ``Retry-After`` header wins, up to 60 s.
        headers: extra request headers (an auth token, say; never stored).
        body: ``event -> dict`` for another JSON shape (default: `slack_body`).
    """

    url: str
    timeout: float = 5.0
    retries: int = 3
    backoff: float = 1.0
    headers: Mapping[str, str] = field(default_factory=dict)
    body: Callable[[AlertEvent], Any] = slack_body

    def __post_init__(self) -> None:
        parts = urlsplit(self.url) if isinstance(self.url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(f"webhook url must be an http(s) URL such as https://hooks.slack.com/services/..., got {self.url!r}")
        if self.timeout <= 0 or self.retries < 0 or self.backoff < 0:
            raise ConfigError(f"webhook timeout must be > 0 and retries, backoff >= 0; got {self.timeout}, {self.retries}, {self.backoff}")

    @property
    def channel(self) -> str:
        """Where it goes, without the secret path: ``webhook hooks.slack.com``."""
        return f"webhook {urlsplit(self.url).netloc}"

    def __repr__(self) -> str:
        return f"Webhook({self.channel!r}, timeout={self.timeout}, retries={self.retries})"

    def __call__(self, event: AlertEvent) -> int:
        """Deliver one event; returns the attempts made, raises `NotificationError` when all failed."""
        data = json.dumps(self.body(event), ensure_ascii=False).encode("utf-8")
        headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": "workbench-monitor", **self.headers}
        last = ""
        for attempt in range(1, self.retries + 2):
            wait = self.backoff * 2 ** (attempt - 1) * (0.75 + 0.5 * random.random())
            try:
                req = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    resp.read()
                    return attempt
            except urllib.error.HTTPError as exc:
                last = f"HTTP {exc.code} from {self.channel}"
                if exc.code not in (408, 429) and exc.code < 500:
                    raise NotificationError(f"{last}; not retried (fix the URL or the body)", attempts=attempt) from None
                after = exc.headers.get("Retry-After") if exc.headers else None
                if after and after.strip().isdigit():
                    wait = min(float(after), 60.0)
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                last = f"{type(reason).__name__}: {reason} ({self.channel})"
            if attempt <= self.retries:
                time.sleep(wait)
        raise NotificationError(f"gave up after {self.retries + 1} attempts: {last}", attempts=self.retries + 1)


def channel_of(target: Any) -> str:
    """A name for where notifications go, for the delivery log."""
    name = getattr(target, "channel", None)
    if isinstance(name, str):
        return name
    return getattr(target, "__name__", None) or type(target).__name__


class Dispatcher:
    """Sends events to every target from one background thread; `submit` never blocks.

    ``record(alert_id, event, channel, ok, attempts, error)`` is called after each delivery.
    """

    def __init__(self, record: Callable[..., None] | None = None) -> None:
        self.record = record
        self.queue: queue.Queue[Any] = queue.Queue(QUEUE_LIMIT)
        self.sent = 0
        self.failed = 0
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._pending = 0

    def submit(self, event: AlertEvent, targets: list[Any]) -> None:
        for target in targets:
            with self._lock:
                self._pending += 1
            try:
                self.queue.put_nowait((event, target))
            except queue.Full:
                with self._lock:
                    self._pending -= 1
                self._done(event, target, False, 0, f"not sent: more than {QUEUE_LIMIT} notifications waiting")
        self._ensure_thread()

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="workbench-notify", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            event, target = self.queue.get()
            try:
                result = target(event)
                attempts = result if isinstance(result, int) and not isinstance(result, bool) and result > 0 else 1
                self._done(event, target, True, attempts, None)
            except NotificationError as exc:
                self._done(event, target, False, exc.attempts, str(exc))
            except Exception as exc:  # noqa: BLE001 - a broken notifier must not stop the others
                self._done(event, target, False, 1, f"{type(exc).__name__}: {exc}")
            finally:
                with self._lock:
                    self._pending -= 1
                    self._idle.notify_all()

    def _done(self, event: AlertEvent, target: Any, ok: bool, attempts: int, error: str | None) -> None:
        if ok:
            self.sent += 1
        else:
            self.failed += 1
            warnings.warn(
                f"workbench could not notify {channel_of(target)} of alert {event.rule} on {event.scope_text}: {error}",
                RuntimeWarning, stacklevel=1,
            )
        if self.record is not None:
            try:
                self.record(event.alert_id, event.event, channel_of(target), ok, attempts, error)
            except Exception:  # noqa: BLE001 - the log is secondary to the notification itself
                pass

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until nothing is waiting or being sent (at most ``timeout`` seconds); True when idle."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while self._pending:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._idle.wait(left)
        return True

    @property
    def pending(self) -> int:
        with self._lock:
            return self._pending
