"""A loopback adb device: the "phone" that tests (and people) can ``adb connect`` to.

``LoopbackDevice(root, port=0, props=..., rooted=True).start()`` runs it in a
background thread and returns the port; ``python -m android_runtime.loopback
--port 6520 --root DIR`` runs it in the foreground. See ``server.py`` and
``sandbox.py`` for what it emulates and where the emulation stops; ``phone_root(DIR)``
writes the sysfs files (this machine's CPUs, optionally a battery) a phone's root folder needs.
"""
from android_runtime.loopback.server import DEFAULT_PORT, LoopbackDevice, default_props, host_abi
from android_runtime.loopback.sysfs import phone_root

__all__ = ["DEFAULT_PORT", "LoopbackDevice", "default_props", "host_abi", "phone_root"]
