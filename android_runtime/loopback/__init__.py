"""A loopback adb device: the "phone" that tests (and people) can ``adb connect`` to.

``LoopbackDevice(root, port=0, props=..., rooted=True).start()`` runs it in a
background thread and returns the port; ``python -m android_runtime.loopback
--port 6520 --root DIR`` runs it in the foreground. See ``server.py`` and
``sandbox.py`` for what it emulates and where the emulation stops.
"""
from android_runtime.loopback.server import DEFAULT_PORT, LoopbackDevice, default_props, host_abi

__all__ = ["DEFAULT_PORT", "LoopbackDevice", "default_props", "host_abi"]
