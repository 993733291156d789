"""The farm's command line.

    python -m android_runtime.farm join --address HEAD:6379 [--adb_host 127.0.0.1:5037] [--serial S ...]
    python -m android_runtime.farm phones --address HEAD:6379      # the farm's phones and their labels

See android_runtime/FARM.md ("Many phones, many hosts").
"""
from __future__ import annotations

import argparse
import sys

from configs.errors import NnspliceError, exit_code

from .join import join
from .node import JoinOptions, require_token_auth
from .phones import KV_NAMESPACE
from .registry import farm_phones


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m android_runtime.farm", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    j = sub.add_parser("join", help="start a Ray worker node offering this host's phones")
    j.add_argument("--address", required=True, help="the head's address HOST:PORT (ray start --head --port)")
    j.add_argument("--node_ip", default="", help="this node's IP as the head reaches it (default: Ray's guess)")
    j.add_argument("--adb_host", default="127.0.0.1:5037", help="adb server HOST[:PORT] of the phones")
    j.add_argument("--serial", action="append", default=[], help="a phone to offer (repeatable; default: all)")
    j.add_argument("--name", default="", help="the node's farm name (default HOSTNAME-PID)")
    j.add_argument("--workdir", default="", help="conversion cache of this node (default ~/.cache/nnsplice/farm/NAME)")
    j.add_argument("--device_python", default="python3", help="Python on the phones (Linux boards, loopback)")
    j.add_argument("--num_cpus", type=int, default=0, help="CPUs offered for conversions (default: all)")
    j.add_argument("--object_store_mb", type=int, default=0, help="Ray object store size (default: Ray's)")
    j.add_argument("--temp_dir", default="", help="Ray's temporary folder (default: Ray's)")
    j.add_argument("--poll", type=float, default=2.0, help="seconds between adb checks of the phones (default 2)")
    p = sub.add_parser("phones", help="list the farm's phones")
    p.add_argument("--address", required=True, help="the head's address HOST:PORT")
    return ap.parse_args(argv)


def list_phones(address: str) -> int:
    require_token_auth()
    import ray


    ray.init(address=address, log_to_driver=False, namespace=KV_NAMESPACE, logging_level="WARNING")
    try:
        for phone in farm_phones():
            print(f"{phone.label()}{'' if phone.alive else ' [gone]'}")
    finally:
        ray.shutdown()
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        if args.command == "phones":
            return list_phones(args.address)
        opts = JoinOptions(address=args.address, node_ip=args.node_ip, adb_host=args.adb_host,
                           serials=tuple(args.serial), name=args.name, workdir=args.workdir,
                           device_python=args.device_python, num_cpus=args.num_cpus,
                           object_store_mb=args.object_store_mb, temp_dir=args.temp_dir, poll_s=args.poll)
        return join(opts, log=lambda m: print(m, flush=True))
    except NnspliceError as e:
        print(f"error: {e}", file=sys.stderr)
        return exit_code(e)


if __name__ == "__main__":
    sys.exit(main())
