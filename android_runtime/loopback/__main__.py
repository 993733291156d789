"""Run a loopback adb device in the foreground.

    python -m android_runtime.loopback --port 6520 --root /tmp/phone [--rooted] \
        [--prop ro.product.model=Pixel_6] [--unauthorized]
    adb connect 127.0.0.1:6520
"""
from __future__ import annotations

import argparse
import asyncio
import logging

from android_runtime.loopback.server import DEFAULT_PORT, LoopbackDevice


def _parse_prop(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--prop wants KEY=VALUE, got {text!r}")
    return key, value


def main(argv: list[str] | None = None) -> None:
    """Parse flags and serve until Ctrl-C."""
    parser = argparse.ArgumentParser(prog="python -m android_runtime.loopback", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"TCP port on 127.0.0.1 (default {DEFAULT_PORT}; not 5555-5585)")
    parser.add_argument("--root", required=True, help="folder standing for the device's filesystem")
    parser.add_argument("--rooted", action="store_true", help="make `su -c CMD` work")
    parser.add_argument("--unauthorized", action="store_true",
                        help="never finish the handshake: the host lists the device as unauthorized")
    parser.add_argument("--prop", type=_parse_prop, action="append", default=[],
                        help="property KEY=VALUE answered by getprop (repeatable)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO)
    device = LoopbackDevice(args.root, port=args.port, props=dict(args.prop),
                            rooted=args.rooted, unauthorized=args.unauthorized)
    print(f"loopback adb device on 127.0.0.1:{args.port}, root {device.sandbox.root}; "
          f"run: adb connect 127.0.0.1:{args.port}", flush=True)
    try:
        asyncio.run(device.serve_forever())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
