"""``join``: this host's phones become a Ray worker node of the farm, until stopped."""
from __future__ import annotations

import logging
import os
import signal
import socket
import time
from pathlib import Path

from configs.errors import DeviceError

from .node import ROOT, FarmNode, JoinOptions, Log, read_phones, require_token_auth, start_ray_node, stop_process
from .phones import KV_NAMESPACE, node_env

CONNECT_TIMEOUT_S = 90.0  # the node's raylet and the first phones' resources must appear by then


def _connect(opts: JoinOptions, node: FarmNode) -> None:
    """Connects this process to the cluster (once the node's raylet is up) and waits for its phones."""
    import ray

    deadline = time.monotonic() + CONNECT_TIMEOUT_S
    while True:
        if node.proc is not None and node.proc.poll() is not None:
            raise DeviceError(f"`ray start --address {opts.address}` exited with {node.proc.returncode} "
                              f"(log: {Path(node_workdir(opts, node.name)) / f'ray-node-{node.name}.log'}); is the head up "
                              "and the auth token the head's?")
        try:
            if not ray.is_initialized():
                ray.init(address=opts.address, _node_ip_address=opts.node_ip or None, log_to_driver=False,
                         namespace=KV_NAMESPACE, logging_level=logging.WARNING)
            if any(n["Alive"] and n.get("Labels", {}).get("nnsplice-farm") == node.name for n in ray.nodes()):
                return
        except (ConnectionError, RuntimeError) as err:
            if time.monotonic() > deadline:
                raise DeviceError(f"cannot join the Ray cluster at {opts.address}: {err}") from None
        if time.monotonic() > deadline:
            raise DeviceError(f"the Ray node of {node.name} did not register with {opts.address} "
                              f"in {CONNECT_TIMEOUT_S:.0f} s")
        time.sleep(0.5)


def node_workdir(opts: JoinOptions, name: str) -> str:
    return opts.workdir or str(Path.home() / ".cache" / "nnsplice" / "farm" / name)


def join(opts: JoinOptions, log: Log = print) -> int:
    """Starts the node, publishes its phones and watches them until SIGTERM/SIGINT; returns 0.

    Raises:
        UserError: token authentication turned off.
        DeviceError: no phone, no token, the head unreachable, the Ray node died.
    """
    require_token_auth()
    name = opts.name or f"{socket.gethostname()}-{os.getpid()}"
    workdir = node_workdir(opts, name)
    node = FarmNode(opts, name, {})
    phones = read_phones(opts, name)

    def stop(signum, frame):  # noqa: ARG001
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        env = node_env(workdir, opts.adb_host, opts.device_python, name, str(ROOT))
        node.proc = start_ray_node(opts, {p.resource: 1 for p in phones.values()}, env, name,
                                   Path(workdir) / f"ray-node-{name}.log")
        (Path(workdir) / f"ray-node-{name}.pid").write_text(f"{node.proc.pid}\n")  # tests kill the node by it
        _connect(opts, node)
        signal.signal(signal.SIGTERM, stop)  # again: ray.init installs a handler of its own
        for phone in phones.values():
            node.publish(phone)
        log(f"joined {opts.address} as {name}: " + "; ".join(p.label() for p in phones.values()))
        while True:
            try:
                node.watch_once(log)
            except DeviceError as err:
                if node.proc.poll() is not None:
                    raise
                log(f"warning: {err}")
            time.sleep(opts.poll_s)
    except KeyboardInterrupt:
        log(f"leaving: {name}")
        return 0
    finally:
        import ray

        if ray.is_initialized():
            node.unpublish()
            ray.shutdown()
        if node.proc is not None:
            stop_process(node.proc)
