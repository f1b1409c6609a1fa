"""Monitoring: detectors with a stated false-alarm rate, alerts in the file, notifications.

::

    bench.monitor.check()                      # every rule, now; opens, updates, resolves alerts
    bench.monitor.notify("https://hooks.slack.com/services/...")   # or any callable
    bench.monitor.alerts()                     # Polars frame, open ones first
    bench.monitor.replay(since, until)         # what checks every minute would have found
    wb.monitor.detect(frame, since, until)     # the same on any traces frame (Parquet, another file)
    bench.monitor.view()                       # last 24 h per scope, open incidents on top
    bench.monitor.score([wb.scorers.llm_judge(...)], share=0.05, budget_usd=1)   # quality in production

Rules are Python objects (`ErrorRateSpike`, `LatencyShift`, `CostPerCall`,
`SpendAnomaly`, `QualityDrop`, `Threshold`) or a TOML file (`load_config`).
From the shell: ``workbench monitor --once`` (cron) or ``--watch``.
"""

from __future__ import annotations

from ._monitor import CheckResult, Monitor, detect, load_config
from .alerts import AlertEvent
from .notify import Webhook, slack_body
from .rules import (
    CostPerCall,
    ErrorRateSpike,
    LatencyShift,
    QualityDrop,
    Rule,
    SpendAnomaly,
    Threshold,
    default_rules,
)

__all__ = [
    "AlertEvent",
    "CheckResult",
    "CostPerCall",
    "ErrorRateSpike",
    "LatencyShift",
    "Monitor",
    "QualityDrop",
    "Rule",
    "SpendAnomaly",
    "Threshold",
    "Webhook",
    "default_rules",
    "detect",
    "load_config",
    "slack_body",
]
