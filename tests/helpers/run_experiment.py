"""Run a stored experiment against an Anthropic-compatible server, for the resume test.

    python tests/helpers/run_experiment.py DB BASE_URL NAME [--concurrency N]

The test kills this process with SIGKILL part-way and resumes in its own process.
"""

from __future__ import annotations

import argparse

import workbench as wb
from workbench.providers.anthropic import AnthropicProvider


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("db")
    parser.add_argument("base_url")
    parser.add_argument("name")
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    bench = wb.open(args.db, provider=AnthropicProvider(api_key="test", base_url=args.base_url))
    exp = bench.experiments.get(args.name, concurrency=args.concurrency)
    print("running", flush=True)
    exp.run(progress=False)
    print(exp.status, flush=True)
    bench.close()


if __name__ == "__main__":
    main()
