"""python -m modular.ui [--port 8765] [--store STORE]: the module store's web app on 127.0.0.1."""
from __future__ import annotations

import argparse
import sys

from ..search import DEFAULT_STORE
from .app import create_app


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m modular.ui", description=__doc__)
    p.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1 (default 8765)")
    p.add_argument("--store", default=DEFAULT_STORE, help=f"module store folder (default {DEFAULT_STORE})")
    p.add_argument("--workdir", default="work", help="artifacts and deployment results")
    p.add_argument("--no-timing", action="store_true", help="do not time new modules")
    a = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    app = create_app(a.store, a.workdir, None if a.no_timing else "host")
    print(f"modular UI on http://127.0.0.1:{a.port}/ (store {a.store})", flush=True)
    app.run(host="127.0.0.1", port=a.port, debug=False, threaded=True)  # loopback only, never 0.0.0.0
    return 0


if __name__ == "__main__":
    sys.exit(main())
