"""Usage to dollars.

Prices come from ``genai-prices`` (offline data shipped in the package), with one
translation: Anthropic's ``input_tokens`` excludes cache reads and writes, while
genai-prices counts them inside its input. Cache writes are priced by lifetime:
a 1-hour write costs more than a 5-minute one (for Claude, 2x the input price
against 1.25x). An unknown model costs ``None`` and warns once, never 0 or a
guess. Overrides (a fine-tune, a negotiated discount) live in the
``price_overrides`` table of the workbench file.

Calls made through a batch engine (Anthropic's Message Batches) are priced at
the batch rate: genai-prices' own batch price where it lists one (its
``processing: batch`` price variant), else the standard price times
`BATCH_DISCOUNT`, and the trace's ``price_source`` says which.
"""

from __future__ import annotations

import math
import threading
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import ConfigError
from .providers.base import Usage

if TYPE_CHECKING:
    from .store import Store


BATCH_DISCOUNT = 0.5
"""Anthropic's Message Batches bill every token kind at half the standard price
(prompt-cache multipliers stack on top), applied where genai-prices lists no batch price."""
BATCH_CONTEXT = {"processing": "batch"}
"""genai-prices' price context for its batch price variants."""


class UnknownPriceWarning(UserWarning):
    """A model has no known price; its calls are stored with cost NULL."""


@dataclass(frozen=True)
class Price:
    """Dollars per million tokens of each kind."""

    input: float
    """Uncached input."""
    output: float
    """Output."""
    cache_read: float | None = None
    """Cache reads; defaults to the input price."""
    cache_write: float | None = None
    """Cache writes (5-minute); defaults to the input price."""
    cache_write_1h: float | None = None
    """Cache writes to the 1-hour cache; defaults to the 5-minute write price."""

    def cost(self, usage: Usage) -> float:
        cr = self.input if self.cache_read is None else self.cache_read
        cw = self.input if self.cache_write is None else self.cache_write
        cw_1h = cw if self.cache_write_1h is None else self.cache_write_1h
        return (
            usage.input_tokens * self.input
            + usage.output_tokens * self.output
            + usage.cache_read_tokens * cr
            + usage.cache_write_5m_tokens * cw
            + usage.cache_write_1h_tokens * cw_1h
        ) / 1_000_000


def genai_prices_version() -> str:
    import genai_prices

    return f"genai-prices {genai_prices.__version__}"


def price_from_genai_prices(model: str, usage: Usage, provider_id: str = "anthropic", *, batch: bool = False) -> float:
    """Cost of one call from genai-prices; raises LookupError for an unknown model.

    ``batch`` asks for its batch price; where it lists none, the standard price comes back.
    """
    from genai_prices import Usage as GPUsage
    from genai_prices import calc_price

    result = calc_price(
        GPUsage(
            # genai-prices' input is the total input, cache reads and writes included.
            input_tokens=usage.total_input_tokens,
            cache_read_tokens=usage.cache_read_tokens,
            # All writes; the 1-hour ones among them are priced at their own rate.
            cache_write_tokens=usage.cache_write_tokens,
            cache_write_1h_tokens=usage.cache_write_1h_tokens,
            output_tokens=usage.output_tokens,
        ),
        model,
        provider_id=provider_id,
        **_context(batch),
    )
    return float(result.total_price)


def _context(batch: bool) -> dict[str, object]:
    """``calc_price`` keyword arguments for a batch price (none for the standard one)."""
    return {"price_context": BATCH_CONTEXT} if batch else {}


def lists_batch_price(model: str, provider_id: str = "anthropic") -> bool:
    """Whether genai-prices prices ``model``'s batch calls itself (a batch price variant
    in force today); raises LookupError for an unknown model."""
    from genai_prices import Usage as GPUsage
    from genai_prices import calc_price

    probe = GPUsage(input_tokens=1_000_000, output_tokens=1_000_000)
    standard = calc_price(probe, model, provider_id=provider_id).total_price
    try:
        batched = calc_price(probe, model, provider_id=provider_id, **_context(True)).total_price
    except TypeError:
        return False  # a genai-prices that predates price contexts
    return batched != standard


def flat_price(model: str, provider_id: str = "anthropic", *, batch: bool = False) -> Price | None:
    """The model's per-token prices when genai-prices has no tiers for it, else None.

    genai-prices prices in Decimal at about 100 µs a call; a flat price gives the
    same dollars (to float precision) in about 1 µs. Each rate is read by pricing a
    million tokens of one kind with genai-prices itself, so the fast path follows
    its rules (which price a 1-hour cache write falls back to, for one). Tiered
    models (long-context prices) always go through genai-prices.
    """
    from decimal import Decimal

    from genai_prices import Usage as GPUsage
    from genai_prices import calc_price

    context = _context(batch)

    def dollars(**tokens: int) -> float:
        return float(calc_price(GPUsage(**tokens), model, provider_id=provider_id, **context).total_price)

    mp = calc_price(GPUsage(input_tokens=1, output_tokens=1), model, provider_id=provider_id, **context).model_price
    fields = (mp.input_mtok, mp.output_mtok, mp.cache_read_mtok, mp.cache_write_mtok,
              mp.cache_write_5m_mtok, mp.cache_write_1h_mtok)
    if not all(f is None or isinstance(f, Decimal) for f in fields):
        return None
    if mp.input_mtok is None or mp.output_mtok is None:
        return None
    m = 1_000_000
    # genai-prices' input is the total input: each kind of input token is inside it too.
    return Price(
        input=dollars(input_tokens=m),
        output=dollars(output_tokens=m),
        cache_read=dollars(input_tokens=m, cache_read_tokens=m),
        cache_write=dollars(input_tokens=m, cache_write_tokens=m),
        cache_write_1h=dollars(input_tokens=m, cache_write_tokens=m, cache_write_1h_tokens=m),
    )


class Pricer:
    """Prices calls, with overrides first and one warning per unknown model."""

    def __init__(self, store: Store | None = None, provider_id: str = "anthropic") -> None:
        self.store = store
        self.provider_id = provider_id
        self._overrides: dict[str, Price] = {}
        self._warned: set[str] = set()
        self._lock = threading.Lock()
        self._source_text: str | None = None
        self._flat: dict[str, Price | None] = {}
        """Per model: its flat genai-prices price, or None when tiered (looked up once)."""
        self._batch_listed: dict[str, bool] = {}
        """Per model: whether genai-prices lists its batch price (else the discount is applied here)."""
        if store is not None:
            for row in store.query("SELECT * FROM price_overrides"):
                self._overrides[row["model"]] = Price(
                    row["input_per_mtok"],
                    row["output_per_mtok"],
                    row["cache_read_per_mtok"],
                    row["cache_write_per_mtok"],
                    row.get("cache_write_1h_per_mtok"),
                )

    def set_price(
        self,
        model: str,
        *,
        input: float,
        output: float,
        cache_read: float | None = None,
        cache_write: float | None = None,
        cache_write_1h: float | None = None,
    ) -> Price:
        """Price ``model`` by hand (dollars per million tokens); stored in the file.

        ``cache_read`` and ``cache_write`` (5-minute writes) default to the input
        price, ``cache_write_1h`` to the ``cache_write`` price.
        """
        for field, value in (("input", input), ("output", output), ("cache_read", cache_read),
                             ("cache_write", cache_write), ("cache_write_1h", cache_write_1h)):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0
            ):
                raise ConfigError(f"price {field} for {model!r} must be a finite number >= 0, got {value!r}")
        price = Price(float(input), float(output), cache_read, cache_write, cache_write_1h)
        if self.store is not None:
            from ._ids import utc_now

            self.store.execute(
                "INSERT INTO price_overrides (model, input_per_mtok, output_per_mtok, "
                "cache_read_per_mtok, cache_write_per_mtok, cache_write_1h_per_mtok, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (model) DO UPDATE SET input_per_mtok = excluded.input_per_mtok, "
                "output_per_mtok = excluded.output_per_mtok, cache_read_per_mtok = excluded.cache_read_per_mtok, "
                "cache_write_per_mtok = excluded.cache_write_per_mtok, "
                "cache_write_1h_per_mtok = excluded.cache_write_1h_per_mtok, updated_at = excluded.updated_at",
                (model, price.input, price.output, cache_read, cache_write, cache_write_1h, utc_now()),
            )
        with self._lock:
            self._overrides[model] = price
            self._warned.discard(model)
        return price

    @property
    def _source(self) -> str:
        # Importing genai-prices costs 0.1 s: only when the first call is priced.
        if self._source_text is None:
            self._source_text = genai_prices_version()
        return self._source_text

    def overrides(self) -> dict[str, Price]:
        return dict(self._overrides)

    def cost(
        self, model: str | None, usage: Usage, provider_id: str | None = None, *, batch: bool = False,
    ) -> tuple[float | None, str | None]:
        """Return (cost in dollars or None, which price data priced it).

        ``provider_id`` is genai-prices' (``openai`` for a call an OpenAI-compatible
        provider answered); None means this pricer's own. ``batch`` prices a call
        made through a batch engine; the source then says whether genai-prices'
        batch price or `BATCH_DISCOUNT` of the standard price was used.
        """
        if not model:
            return None, None
        override = self._overrides.get(model)
        if override is not None:
            if batch:
                return override.cost(usage) * BATCH_DISCOUNT, _discounted("override")
            return override.cost(usage), "override"
        try:
            if batch:
                return self._genai_batch(model, usage, provider_id)
            return self._genai(model, usage, provider_id), self._source
        except LookupError:
            with self._lock:
                first = model not in self._warned
                self._warned.add(model)
            if first:
                warnings.warn(
                    f"no price known for model {model!r}: its calls are stored with cost NULL. "
                    f"Set one with bench.pricing.set_price({model!r}, input=..., output=...) "
                    "(dollars per million tokens).",
                    UnknownPriceWarning,
                    stacklevel=3,
                )
            return None, None

    def estimate(self, model: str, usage: Usage, provider_id: str | None = None, *, batch: bool = False) -> float | None:
        """Cost without warnings, for budgets and estimates (``batch``: at the batch rate)."""
        override = self._overrides.get(model)
        if override is not None:
            return override.cost(usage) * (BATCH_DISCOUNT if batch else 1.0)
        try:
            if batch:
                return self._genai_batch(model, usage, provider_id)[0]
            return self._genai(model, usage, provider_id)
        except LookupError:
            return None

    def _genai(self, model: str, usage: Usage, provider_id: str | None = None, *, batch: bool = False) -> float:
        provider_id = provider_id or self.provider_id
        key = model if provider_id == self.provider_id else f"{provider_id}/{model}"
        key = f"batch:{key}" if batch else key
        if key not in self._flat:
            self._flat[key] = flat_price(model, provider_id, batch=batch)
        flat = self._flat[key]
        if flat is not None:
            return flat.cost(usage)
        return price_from_genai_prices(model, usage, provider_id, batch=batch)

    def _genai_batch(self, model: str, usage: Usage, provider_id: str | None = None) -> tuple[float, str]:
        """A batch call's dollars and source: genai-prices' batch price, or the discount applied here."""
        key = f"{provider_id or self.provider_id}/{model}"
        if key not in self._batch_listed:
            self._batch_listed[key] = lists_batch_price(model, provider_id or self.provider_id)
        if self._batch_listed[key]:
            return self._genai(model, usage, provider_id, batch=True), f"{self._source} (batch price)"
        return self._genai(model, usage, provider_id) * BATCH_DISCOUNT, _discounted(self._source)


def _discounted(source: str) -> str:
    """The price source of a batch call priced at the standard rate less the batch discount."""
    return f"{source} x {BATCH_DISCOUNT:g} (Anthropic batch discount; no batch price listed)"
