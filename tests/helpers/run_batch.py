"""Run a stored experiment with ``run(batch=True)`` against an Anthropic-compatible server.

    python tests/helpers/run_batch.py DB BASE_URL NAME [--die-after-create]

The batch tests kill this process while it waits for its batches, or (with
``--die-after-create``) make it die the moment the API has created a batch and
before the file records the batch's id, then resume in another process.
"""

from __future__ import annotations

import argparse
import os

import workbench as wb
from workbench import batches
from workbench.providers.anthropic import AnthropicProvider


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("db")
    parser.add_argument("base_url")
    parser.add_argument("name")
    parser.add_argument("--die-after-create", action="store_true")
    parser.add_argument("--batch-size", type=int, default=10)
    args = parser.parse_args()
    if args.die_after_create:
        def die(self: object, bid: str, info: object) -> None:
            os._exit(3)  # no cleanup of any kind: as a power cut would

        batches.BatchRun._record_submitted = die  # type: ignore[method-assign]
    bench = wb.open(args.db, provider=AnthropicProvider(api_key="test", base_url=args.base_url))
    exp = bench.experiments.get(args.name)
    print("running", flush=True)
    exp.run(batch=True, progress=False, poll_s=0.05, batch_size=args.batch_size)
    print(exp.status, flush=True)
    bench.close()


if __name__ == "__main__":
    main()
