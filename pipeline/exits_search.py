"""Exit search on a python factory's network (or a fusion zoo family), with exits.search's options:

    python -m pipeline.exits_search --config FACTORY.yaml --out DIR [--tolerance 0.99] [--batch 8] ...

``exits.search`` sits below the pipeline and cannot load users' models; this entry point hands it the
pipeline's loader (pipeline.sources.exits_python.search_loader). AnyNet configs work here too.
"""
from __future__ import annotations

import sys
from pathlib import Path

from exits import search
from exits.search import model_source

from .sources.exits_python import search_loader


PROG = "python -m pipeline.exits_search"


def main(argv: list[str] | None = None) -> int:
    a = search.parse_args(argv, PROG)
    return search.main(argv, loader=search_loader if model_source(Path(a.config)) else None, prog=PROG)


if __name__ == "__main__":
    sys.exit(main())
