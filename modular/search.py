"""Find modules in a store by class name.

    python -m modular.search sneaker [--store STORE] [--json]
    python -m modular.search --store STORE --remove MODULE_ID     # drop a (corrupt) entry

The default store is $NNSPLICE_MODULES or work/modules.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys

from configs.errors import NnspliceError, UserError

from .store import ModuleEntry, Store

DEFAULT_STORE = os.environ.get("NNSPLICE_MODULES", "work/modules")


def row(e: ModuleEntry) -> str:
    """One line of the result table."""
    lat = ", ".join(f"{d} {v:.0f}/{e.latency_full_us.get(d, float('nan')):.0f} us" for d, v in e.latency_us.items())
    return (f"{e.id:<44} {e.method:<12} {','.join(e.classes):<28} retention {e.retention:.3f}  "
            f"acc {e.accuracy:.4f} (full {e.accuracy_orig:.4f})  {lat or 'not timed'}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m modular.search", description="Find modules by class name.")
    p.add_argument("query", nargs="?", default="", help="class name (substring), dataset:class or module id")
    p.add_argument("--store", default=DEFAULT_STORE, help=f"module store folder (default {DEFAULT_STORE})")
    p.add_argument("--json", action="store_true", help="print the entries as JSON")
    p.add_argument("--remove", default="", help="remove this module id from the store")
    a = p.parse_args(argv)
    try:
        st = Store(a.store)
        if a.remove:
            st.remove(a.remove)
            print(f"removed {a.remove} from {a.store}")
            return 0
        if not a.query:
            raise UserError("query: give a class name, e.g. `python -m modular.search sneaker`")
        found = st.search(a.query)
        if a.json:
            print(json.dumps([dataclasses.asdict(e) for e in found], indent=1))
        else:
            for e in found:
                print(row(e))
            print(f"{len(found)} module(s) match {a.query!r} in {a.store}")
        return 0 if found else 1
    except NnspliceError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code


if __name__ == "__main__":
    sys.exit(main())
