"""The simulated provider's judge: grades a rendered LLM-as-judge prompt.

It reads only the prompt text, the way a real judge would: the response sits
between ``<output>`` and ``</output>``, the reference between ``<expected>``
and ``</expected>`` and the inputs between ``<input>`` and ``</input>`` (the
layout ``scorers.llm_judge`` renders). The grade is a similarity: a response
that contains the reference scores high, otherwise by the share of the
reference's content words it repeats; with no reference, by how much of the
input it addresses. A less skilled judge adds more noise (sd
``(1 - skill) * 0.5``), so judges disagree the way real ones do.
"""

from __future__ import annotations

import random
import re

JUDGE_MARKER = "SCORE: <a number from 0 to 1>"
"""The reply-format line every judge prompt carries."""

CONTAINED = 0.95
"""Similarity when the response contains the reference."""

_WORD = re.compile(r"[a-z0-9]+")
_WS = re.compile(r"\s+")
_STOPWORDS = frozenset(
    """a an the and or but if then so to of in on at by for with from as is are was were be been being
    it its this that these those i me my we our you your he she they them their what which who when where
    why how do does did can could should would will may might must have has had not no there here about
    into over than too very just also any all each some such only please thanks""".split()
)


def is_judge_prompt(text: str) -> bool:
    """Whether a prompt asks for a judge's ``SCORE:`` reply."""
    return JUDGE_MARKER in text and any(line.strip() == JUDGE_MARKER for line in text.splitlines())


def _section(text: str, tag: str, before: int | None = None) -> tuple[str, int]:
    """The text between the last ``<tag>`` and ``</tag>`` lines before ``before``, and where it starts.

    Searching from the end keeps a rubric that mentions the tags from being
    mistaken for the sections.
    """
    limit = len(text) if before is None else before
    end = text.rfind(f"\n</{tag}>", 0, limit)
    if end < 0:
        return "", limit
    opening = f"<{tag}>\n"
    start = text.rfind(opening, 0, end + 1)
    if start < 0:
        return "", limit
    return text[start + len(opening): end], start


def _words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOPWORDS}


def _norm(text: str) -> str:
    return _WS.sub(" ", text).strip().casefold()


def _similarity(output: str, expected: str, inputs: str) -> tuple[float, str]:
    """How good the response looks, in [0, 1], and why in one sentence."""
    if not output.strip():
        return 0.0, "The response is empty."
    out_words = _words(output)
    if expected.strip():
        if _norm(expected) in _norm(output):
            return CONTAINED, "The response contains the reference answer."
        ref_words = _words(expected)
        if not ref_words:
            return 0.1, "The response does not give the reference answer."
        shared = len(ref_words & out_words)
        return (
            0.1 + 0.7 * shared / len(ref_words),
            f"The response shares {shared} of {len(ref_words)} key terms with the reference answer.",
        )
    in_words = _words(inputs)
    if not in_words:
        return 0.5, "There is no reference or input to compare with, so the grade is neutral."
    shared = len(in_words & out_words)
    return (
        0.3 + 0.6 * shared / len(in_words),
        f"The response addresses {shared} of {len(in_words)} key terms of the input.",
    )


def judge_reply(text: str, rng: random.Random, skill: float) -> str:
    """A judge's reply to a rendered judge prompt: ``SCORE: 0.85\\nRATIONALE: ...``.

    Deterministic for a given ``rng`` state; ``skill`` in [0, 1] sets the noise.
    """
    expected, start = _section(text, "expected")
    output, start = _section(text, "output", start)
    inputs, _ = _section(text, "input", start)
    similarity, why = _similarity(output, expected, inputs)
    sd = max(0.0, 1.0 - min(1.0, skill)) * 0.5
    noisy = similarity + rng.gauss(0.0, sd)  # always drawn, so the rng advances the same way at any skill
    score = min(1.0, max(0.0, noisy))
    return f"SCORE: {score:.2f}\nRATIONALE: {why}"
