"""The farm's phones as the cluster sees them (call inside ``ray.init``)."""
from __future__ import annotations

import logging
import os

from configs.errors import DeviceError

from .node import require_token_auth
from .phones import KV_NAMESPACE, RESOURCE_PREFIX, Phone


def connect(address: str, flag: str = "--ray") -> None:
    """``ray.init`` on the farm with token authentication; a loopback address is also the node IP
    (a local cluster on 127.0.0.2), else ``NNSPLICE_RAY_NODE_IP`` or Ray's guess.

    Raises:
        DeviceError: the cluster cannot be reached (with what to start).
    """
    require_token_auth()
    import ray

    host = address.rpartition(":")[0]
    node_ip = os.environ.get("NNSPLICE_RAY_NODE_IP") or (host if host.startswith("127.") else None)
    try:
        ray.init(address=address, _node_ip_address=node_ip, log_to_driver=False, namespace=KV_NAMESPACE,
                 logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError) as e:
        raise DeviceError(f"{flag} = {address!r}: cannot connect to the Ray cluster ({str(e).splitlines()[0]}); "
                          "start a head (ray start --head) and farm nodes (python -m android_runtime.farm join)"
                          ", and use the head's auth token") from None


def farm_phones() -> list[Phone]:
    """Every published phone whose resource a live node still offers, sorted by serial.

    A phone of a dead node drops out (its node's resources leave the cluster); a phone that is
    gone from adb stays listed with ``alive=False`` while its node runs.
    """
    import ray
    from ray.experimental import internal_kv

    live_nodes = {n.get("Labels", {}).get("nnsplice-farm") for n in ray.nodes() if n["Alive"]}
    offered = set(ray.cluster_resources())
    phones = []
    for key in internal_kv._internal_kv_list(RESOURCE_PREFIX, namespace=KV_NAMESPACE):
        data = internal_kv._internal_kv_get(key, namespace=KV_NAMESPACE)
        if data is None:
            continue
        phone = Phone.from_json(data)
        if phone.resource in offered and phone.node in live_nodes:
            phones.append(phone)
    return sorted(phones, key=lambda p: p.serial)
