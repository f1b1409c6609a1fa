"""OpenTelemetry out and in: the file's traces as OTLP spans with the GenAI conventions.

Out, in bulk or live (needs ``pip install 'workbench[otel]'``)::

    wb.otel.export(bench, "http://localhost:4318")          # every trace in the file
    live = wb.otel.live(bench, "http://localhost:4318")     # each new trace as it is written

In, from any OTLP/HTTP exporter (protobuf or JSON)::

    server = wb.otel.serve(bench, port=4318)                # or: workbench serve
    # point services at server.url (http://127.0.0.1:4318/v1/traces)

Mapping of fields to attributes: `workbench.otel._mapping`.
"""

from __future__ import annotations

from .export import LiveExport, SpanBuilder, export, live, otlp_exporter
from .receive import OtlpServer, PayloadError, serve

__all__ = ["LiveExport", "OtlpServer", "PayloadError", "SpanBuilder", "export", "live", "otlp_exporter", "serve"]
