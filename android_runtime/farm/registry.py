"""The farm's phones as the cluster sees them (call inside ``ray.init``)."""
from __future__ import annotations

from .phones import KV_NAMESPACE, RESOURCE_PREFIX, Phone


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
