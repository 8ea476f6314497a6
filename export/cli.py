"""Console script `medfuse-export` (placeholder until its issue lands)."""

import sys


def main() -> None:
    print("medfuse-export is not built yet.", file=sys.stderr)
    sys.exit(2)
