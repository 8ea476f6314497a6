"""Console script `medfuse-bench` (placeholder until its issue lands)."""

import sys


def main() -> None:
    print("medfuse-bench is not built yet.", file=sys.stderr)
    sys.exit(2)
