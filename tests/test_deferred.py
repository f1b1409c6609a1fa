"""A slow, rarely used module behind Altair loads on first use, and still works when used."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

CODE = """
import sys
import workbench, altair, jsonschema
print(type(sys.modules["rfc3987_syntax"]).__name__)
checker = jsonschema.FormatChecker()
print(checker.conforms("https://example.com/\u00e4", "iri"), checker.conforms("no iri at all", "iri"))
print(type(sys.modules["rfc3987_syntax"]).__name__)
"""


@pytest.mark.skipif(importlib.util.find_spec("rfc3987_syntax") is None, reason="rfc3987-syntax is not installed")
def test_altair_imports_without_compiling_the_iri_grammars_and_iri_checks_still_work():
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["_Deferred", "True", "False", "module"]
