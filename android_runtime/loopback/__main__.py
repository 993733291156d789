"""Run a loopback adb device in the foreground.

WARNING: this EXECUTES COMMANDS ON THIS MACHINE. Every `adb shell` command sent to the device
runs here, as a real process. Safe defaults: only an adb server whose key is trusted (--keys,
default ~/.android/adbkey.pub) gets a shell; started as root, commands run as `nobody`
(--user); they run in a bubblewrap sandbox where only the --root folder is writable and there
is no network (--no-confine turns that off; without bwrap installed the device refuses to
start).

    python -m android_runtime.loopback --port 6520 --root /tmp/phone [--rooted] \\
        [--prop ro.product.model=Pixel_6] [--unauthorized] [--keys ~/.android/adbkey.pub] [--cpus 1]
    adb connect 127.0.0.1:6520
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from android_runtime.loopback.auth import user_key_file
from android_runtime.loopback.confine import ConfinementError
from android_runtime.loopback.cpus import CpuConfinementError
from android_runtime.loopback.server import DEFAULT_PORT, LoopbackDevice


def _parse_prop(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--prop wants KEY=VALUE, got {text!r}")
    return key, value


def main(argv: list[str] | None = None) -> int:
    """Parse flags and serve until Ctrl-C."""
    parser = argparse.ArgumentParser(prog="python -m android_runtime.loopback", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"TCP port on 127.0.0.1 (default {DEFAULT_PORT}; not 5555-5585)")
    parser.add_argument("--root", required=True, help="folder standing for the device's filesystem")
    parser.add_argument("--rooted", action="store_true", help="make `su -c CMD` work (no real privilege change)")
    parser.add_argument("--unauthorized", action="store_true",
                        help="never finish the handshake: the host lists the device as unauthorized")
    parser.add_argument("--keys", action="append", default=None, metavar="FILE",
                        help="trusted adb public keys (adbkey.pub or an adb_keys list; repeatable); "
                             "default: ~/.android/adbkey.pub of this user ($ANDROID_USER_HOME)")
    parser.add_argument("--no-auth", action="store_true",
                        help="accept any client without RSA authentication (anyone on this machine gets a shell)")
    parser.add_argument("--user", default=None,
                        help="started as root: the user commands run as (default nobody)")
    parser.add_argument("--allow-root", action="store_true", help="started as root: run commands as root")
    parser.add_argument("--no-confine", action="store_true",
                        help="run commands without the bwrap sandbox (they can write wherever their user can)")
    parser.add_argument("--expose", action="append", default=None, metavar="PATH",
                        help="host path commands may read though --user cannot reach it (repeatable; "
                             "default: this Python's installation, for --device_python)")
    parser.add_argument("--cpus", default=None, metavar="LIST",
                        help="host CPUs standing for the phone's CPUs, e.g. 1 or 0,0: its commands run on them "
                             "only, its sysfs lists that many CPUs from cpu0 (a test double for phones with "
                             "cores of their own; default: this machine's CPUs, shared)")
    parser.add_argument("--prop", type=_parse_prop, action="append", default=[],
                        help="property KEY=VALUE answered by getprop (repeatable)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO)
    try:
        device = LoopbackDevice(args.root, port=args.port, props=dict(args.prop), rooted=args.rooted,
                                unauthorized=args.unauthorized, keys=args.keys or [user_key_file()],
                                require_auth=not args.no_auth,
                                user=args.user, allow_root=args.allow_root, confine=not args.no_confine,
                                expose=tuple(args.expose) if args.expose else None, cpus=args.cpus)
    except (ConfinementError, CpuConfinementError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    keys = device.keyring.describe() if device.keyring else "NONE (--no-auth: any local client)"

    cpus = f", on host CPUs only ({device.sandbox.cpus.describe()})" if device.sandbox.cpus else ""

    def ready(port: int) -> None:
        print(f"loopback adb device on 127.0.0.1:{port}, root {device.sandbox.root}; EXECUTES COMMANDS ON THIS "
              f"MACHINE {device.sandbox.policy.describe()}{cpus}; trusted keys: {keys}; "
              f"run: adb connect 127.0.0.1:{port}", flush=True)

    try:
        asyncio.run(device.serve_forever(ready))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
