"""Malformed API keys, and a check that no part of one leaked into some text.

Shared by the provider tests and the wrapped-client tests. The check is written
independently of ``workbench.providers._redact``: a leak is any run of 8
characters of the key, in any of the spellings it takes on its way (as is,
Python-escaped, as UTF-8 bytes, decoded as Latin-1 by a server).
"""

from __future__ import annotations

MALFORMED_KEYS = {
    # httpx refuses the header and quotes it: b'Bearer sk-...\n-...'
    "inner newline": "sk-ant-api03-A1b2C3d4E5f6G7h8\n-I9j0K1l2M3n4O5p6",
    "trailing return": "sk-ant-api03-Q7r8S9t0U1v2W3x4Y5z6\r",
    # Sent as UTF-8; a server decoding Latin-1 echoes mojibake.
    "non-ASCII": "sk-ant-api03-\u043a\u043b\u044e\u0447-Y5z6A7b8C9d0E1f2",
    "inner space": "sk-ant-api03-G3h4I5j6 K7l8M9n0O1p2",
    "backslash": "sk-ant-api03-Q3r4S5t6\\U7v8W9x0Y1z2",
}


def spellings(key: str) -> set[str]:
    utf8 = key.encode("utf-8")
    escaped = key.encode("unicode_escape").decode("ascii")
    as_bytes = repr(utf8)[2:-1]
    forms = {key, escaped, as_bytes, utf8.decode("latin-1")}
    return forms | {f.replace("\\", "\\\\") for f in forms}


def leaks(text: str, key: str) -> list[str]:
    """The 8-character runs of ``key`` (in any spelling) found in ``text``."""
    found = set()
    for form in spellings(key):
        for i in range(len(form) - 7):
            if form[i:i + 8] in text:
                found.add(form[i:i + 8])
    return sorted(found)
