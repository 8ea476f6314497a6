"""Console script `medfuse-train` (placeholder until its issue lands)."""

import sys


def main() -> None:
    print("medfuse-train is not built yet.", file=sys.stderr)
    sys.exit(2)
