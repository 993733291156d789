"""Phones of the farm: their Ray resource names, their labels and what a config asks for.

Pure functions only (no adb, no Ray): ``node`` fetches, ``pipeline.farm`` decides.
A config chooses phones with ``DEPLOY.PHONE``: ``""``/``any`` (any phone), ``soc:NAME``,
``model:NAME``, ``android:VERSION`` or an adb serial.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass

from android_runtime.device_info import DeviceProps
from configs.errors import UserError

RESOURCE_PREFIX = "phone:"  # Ray custom resource of one phone: phone:<serial>
KV_NAMESPACE = "nnsplice_farm"  # Ray internal key-value namespace of the phone labels
ENV_WORKDIR = "NNSPLICE_FARM_WORKDIR"  # a node's conversion cache and run folder (set by join)
ENV_ADB_HOST = "NNSPLICE_FARM_ADB_HOST"  # the adb server of a node's phones
ENV_DEVICE_PYTHON = "NNSPLICE_FARM_DEVICE_PYTHON"  # Python on the node's (Linux/loopback) phones
ENV_NODE = "NNSPLICE_FARM_NODE"  # the node's farm name (a label on the Ray node)
SELECTOR_KINDS = ("soc", "model", "android")  # DEPLOY.PHONE = KIND:VALUE


@dataclass(frozen=True)
class Phone:
    """One phone of the farm, as published by its node.

    Attributes:
        serial: adb serial on its node's adb server.
        model: ``ro.product.model``.
        soc: SoC (``ro.soc.model``, else the board platform).
        board: ``ro.board.platform``.
        android: Android version (``ro.build.version.release``).
        abi: primary ABI.
        node: the farm name of the node it is attached to.
        alive: False while the phone is gone (its resource is then held by the node).
    """

    serial: str
    model: str
    soc: str
    board: str
    android: str
    abi: str
    node: str
    alive: bool = True

    @property
    def resource(self) -> str:
        return resource_name(self.serial)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> "Phone":
        return cls(**json.loads(data))

    def label(self) -> str:
        """``serial (model, soc, Android N) on node``, for messages."""
        return f"{self.serial} ({self.model}, {self.soc}, Android {self.android}) on {self.node}"


def resource_name(serial: str) -> str:
    """The Ray custom resource of a phone."""
    return RESOURCE_PREFIX + serial


def phone_from_props(serial: str, props: DeviceProps, node: str) -> Phone:
    return Phone(serial=serial, model=props.model, soc=props.soc, board=props.board,
                 android=props.android_version, abi=props.abi, node=node)


def check_selector(value: str, where: str = "DEPLOY.PHONE") -> str:
    """Validates a phone selector; returns it stripped.

    Raises:
        UserError: ``KIND:`` with an unknown kind or an empty value.
    """
    value = (value or "").strip()
    kind, sep, rest = value.partition(":")
    if sep and kind in SELECTOR_KINDS and not rest:
        raise UserError(f"{where} = {value!r}: {kind}:NAME needs a name, e.g. {kind}:sd888")
    return value


def matches(phone: Phone, selector: str) -> bool:
    """Whether ``phone`` is one a config's ``DEPLOY.PHONE`` asks for (names compare case-blind).

    ``soc:NAME`` also matches the board platform (``lahaina`` for a Snapdragon 888 board).
    """
    sel = (selector or "").strip()
    if sel in ("", "any"):
        return True
    kind, sep, value = sel.partition(":")
    if sep and kind in SELECTOR_KINDS:
        v = value.lower()
        if kind == "soc":
            return v in (phone.soc.lower(), phone.board.lower())
        if kind == "model":
            return v == phone.model.lower()
        return v == phone.android.lower()
    return sel == phone.serial


def describe_selector(selector: str) -> str:
    return "any phone" if selector.strip() in ("", "any") else f"DEPLOY.PHONE {selector!r}"


def node_env(workdir: str, adb_host: str, device_python: str, node: str, pythonpath: str) -> dict[str, str]:
    """The environment a farm node's Ray processes (and so its tasks) run with."""
    path = os.pathsep.join(p for p in (pythonpath, os.environ.get("PYTHONPATH", "")) if p)
    return {ENV_WORKDIR: workdir, ENV_ADB_HOST: adb_host, ENV_DEVICE_PYTHON: device_python, ENV_NODE: node,
            "PYTHONPATH": path}
