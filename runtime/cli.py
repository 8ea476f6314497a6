"""Console script `medfuse-run` (placeholder until the executor lands)."""

import sys


def main() -> None:
    print("medfuse-run is not built yet.", file=sys.stderr)
    sys.exit(2)
