"""Numbers as a person writes them: dollars, shares, p-values, milliseconds.

Plain text (no HTML); ``_html.esc`` makes it safe for a page. Every function
takes None or NaN and says ``n/a`` (callers that know why say so beside it).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

NA = "n/a"
MINUS = "\u2212"
"""A real minus sign: a hyphen reads as a dash in proportional fonts."""


def missing(x: Any) -> bool:
    """None, NaN or an infinity: nothing a reader should see as a number."""
    if x is None:
        return True
    try:
        return not math.isfinite(float(x))
    except (TypeError, ValueError):
        return True


def _sign(x: float, signed: bool) -> str:
    if x < 0:
        return MINUS
    return "+" if signed and x > 0 else ""


def _sig(x: float, digits: int) -> str:
    """``x`` (non-negative) with ``digits`` significant digits and no exponent."""
    if x == 0:
        return "0"
    decimals = max(0, digits - 1 - math.floor(math.log10(x)))
    return f"{x:,.{decimals}f}"


def money(x: Any, *, signed: bool = False, symbol: bool = True) -> str:
    """Dollars with a precision that fits their size.

    ``$1,234``, ``$12.35``, ``$0.47``, ``$0.0473``, ``$0.0000468``: two decimals
    from a dollar up (none from $10,000), three significant digits below.
    ``symbol=False`` leaves out the ``$`` (for a column whose header says it).
    """
    if missing(x):
        return NA
    x = float(x)
    a = abs(x)
    if a >= 10_000:
        body = f"{a:,.0f}"
    elif a >= 1:
        body = f"{a:,.2f}"
    elif a == 0:
        body = "0.00"
    else:
        body = _sig(a, 3).rstrip("0")  # $0.0012, not $0.00120
        if len(body.split(".")[1]) < 2:
            body = f"{a:.2f}"  # $0.50, not $0.5
    return f"{_sign(x, signed)}{'$' if symbol else ''}{body}"


def per_thousand(x: Any) -> str:
    """Dollars per call shown per 1,000 calls: ``$0.47 per 1,000 calls``."""
    return NA if missing(x) else f"{money(float(x) * 1000)} per 1,000 calls"


def pct(x: Any, digits: int = 1, *, signed: bool = False) -> str:
    """A share as a percentage: 0.617 -> ``61.7%``."""
    if missing(x):
        return NA
    x = float(x) * 100
    return f"{_sign(x, signed)}{abs(x):.{digits}f}%"


def relative(new: Any, old: Any) -> str:
    """The relative change from ``old`` to ``new``: ``+20%``, ``−3.5%``; n/a when old is 0 or missing."""
    if missing(new) or missing(old) or float(old) == 0:
        return NA
    change = (float(new) - float(old)) / abs(float(old))
    digits = 0 if abs(change) >= 0.1 else 1
    return pct(change, digits, signed=True)


def pvalue(p: Any) -> str:
    """``p=0.034``, ``p=0.21``, ``p<0.001``: two significant digits, never 0 and never an exponent."""
    if missing(p):
        return f"p={NA}"
    p = float(p)
    if p < 0.001:
        return "p<0.001"
    return f"p={_sig(p, 2)}" if p < 0.1 else f"p={p:.2f}"


def ms(x: Any, *, signed: bool = False, unit: bool = True, decimals: int | None = None) -> str:
    """Milliseconds: ``1,234 ms``, ``8.5 ms``, ``+120 ms`` (``unit=False``: ``1,234``).

    ``decimals`` fixes the precision, e.g. 0 for differences between latencies
    of hundreds of ms (``−61 ms``, not ``−60.8 ms``).
    """
    if missing(x):
        return NA
    x = float(x)
    a = abs(x)
    if decimals is not None:
        body = f"{a:,.{decimals}f}"
    else:
        body = f"{a:,.0f}" if a >= 100 else (f"{a:.1f}" if a >= 1 else _sig(a, 2) if a else "0")
    return f"{_sign(x, signed)}{body}{' ms' if unit else ''}"


def num(x: Any, digits: int = 3, *, signed: bool = False) -> str:
    """A score or other plain number with ``digits`` decimals: ``0.617``, ``+0.104``."""
    if missing(x):
        return NA
    x = float(x)
    return f"{_sign(x, signed)}{abs(x):,.{digits}f}"


def count(n: Any) -> str:
    """An integer with thousands separators: ``12,345``."""
    return NA if missing(n) else f"{int(n):,}"


def interval(low: Any, high: Any, fmt: Any = num, **kwargs: Any) -> str:
    """A confidence interval as ``low to high`` in the given format."""
    if missing(low) or missing(high):
        return NA
    return f"{fmt(low, **kwargs)} to {fmt(high, **kwargs)}"


def plural(n: int, word: str, words: str | None = None) -> str:
    """``1 call``, ``360 calls``, ``1,000 items``."""
    return f"{count(n)} {word if n == 1 else (words or word + 's')}"


def column(name: str, *, pretty: bool = True) -> tuple[str, Callable[[Any], str]]:
    """A frame column's header with its unit, and how its values read.

    By the column naming habits (``*_usd``, ``*_ms``, ``latency_*``, ``*rate*``,
    ``*tokens*``), so units land in headers: ``cost_per_item_usd`` reads
    ``cost per item ($)`` with ``0.000232``, ``latency_p50_ms`` reads
    ``latency p50 (ms)``. ``pretty=False`` keeps the column's own name
    (``cost_per_item_usd ($)``), for readers who will select it by name.
    """
    words = name.replace("_", " ") if pretty else name
    if name.endswith("_usd") or name == "cost":
        return f"{words.removesuffix(' usd') if pretty else words} ($)", lambda v: money(v, symbol=False)
    if name.endswith("_ms") or name.startswith(("latency_", "ttft_")):
        return f"{words.removesuffix(' ms') if pretty else words} (ms)", lambda v: ms(v, unit=False)
    if "rate" in name:
        return words, pct
    if "tokens" in name:
        return words, lambda v: NA if missing(v) else count(v) if isinstance(v, int) else f"{float(v):,.1f}"
    return words, plain


def plain(value: Any) -> str:
    """Any cell value: integers with separators, other numbers to 3 decimals, n/a for nothing, text as is."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return count(value)
    if isinstance(value, float):
        return num(value)
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M") + (" UTC" if value.utcoffset() == timedelta(0) else "")
    return NA if value is None else str(value)
