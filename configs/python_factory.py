"""A ``python`` model: FACTORY builds a torch.nn.Module, WEIGHTS (a local file) fills it.

Shared by every layer that takes users' networks (the pipeline's model sources, fusion's task
files). Loading never downloads. While the factory runs and the weights load, every network
connection outside this machine is refused (``no_network``), so a factory that reaches for a hub
fails at once, offline or not, and the error says so. torch is imported inside the functions.
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.util
import ipaddress
import socket
import sys
from pathlib import Path
from typing import Any, Iterator

from .errors import ConfigError
from .user_models import ModelEntry, resolve_path


class NetworkBlocked(ConnectionError):
    """A connection attempt while a model loads (loading never downloads)."""


def _local(address: Any) -> bool:
    host = address[0] if isinstance(address, tuple) else address
    if isinstance(host, (bytes, str)) and not isinstance(address, tuple):
        return True  # a Unix socket path
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return str(host) in ("localhost",)


@contextlib.contextmanager
def no_network() -> Iterator[None]:
    """Refuses connections to anything but this machine (and name look-ups of other hosts)."""
    real_connect, real_connect_ex, real_getaddrinfo = socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo

    def connect(self, address):
        if not _local(address):
            raise NetworkBlocked(f"network access to {address!r} refused while loading a model")
        return real_connect(self, address)

    def connect_ex(self, address):
        if not _local(address):
            raise NetworkBlocked(f"network access to {address!r} refused while loading a model")
        return real_connect_ex(self, address)

    def getaddrinfo(host, *a, **kw):
        if host not in (None, "localhost") and not _local((host, 0)):
            raise NetworkBlocked(f"name look-up of {host!r} refused while loading a model")
        return real_getaddrinfo(host, *a, **kw)

    socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo = connect, connect_ex, getaddrinfo
    try:
        yield
    finally:
        socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo = (real_connect, real_connect_ex,
                                                                              real_getaddrinfo)


def _network_error(e: BaseException) -> bool:
    """Whether an exception (or one it was raised from) is a refused or failed network access."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        name = type(e).__name__
        if isinstance(e, (NetworkBlocked, socket.gaierror)) or name in (
                "URLError", "ConnectionError", "OfflineModeIsEnabled", "LocalEntryNotFoundError", "MaxRetryError",
                "NewConnectionError"):
            return True
        e = e.__cause__ or e.__context__
    return False


def factory_function(f: str, key: str, factory: str):
    """The function FACTORY names: ``FILE.py:function`` (relative to the config) or ``package.module:function``."""
    mod_name, _, fn = factory.rpartition(":")
    try:
        if mod_name.endswith(".py"):
            path = resolve_path(f, mod_name).resolve()
            unique = f"nnsplice_user_{abs(hash(str(path)))}_{path.stem}"
            spec = importlib.util.spec_from_file_location(unique, path)
            module = importlib.util.module_from_spec(spec)
            sys.path.insert(0, str(path.parent))  # the factory file may import its neighbours
            try:
                with no_network():
                    spec.loader.exec_module(module)
            finally:
                sys.path.remove(str(path.parent))
        else:
            with no_network():
                module = importlib.import_module(mod_name)
    except Exception as e:  # the user's code: any failure is theirs to fix
        raise ConfigError(f, key, factory, f"a module that imports ({type(e).__name__}: {e})") from None
    func = getattr(module, fn, None)
    if not callable(func):
        raise ConfigError(f, key, factory, f"{mod_name} has no function {fn!r}")
    return func


def build_python_model(f: str, pre: str, entry: ModelEntry):
    """Calls FACTORY(**ARGS), loads WEIGHTS, returns the module in eval mode.

    Raises:
        ConfigError: the factory raises, reaches the network, returns no nn.Module, or the weights do not fit.
    """
    import torch

    m = entry.MODEL
    func = factory_function(f, f"{pre}MODEL.FACTORY", m.FACTORY)
    try:
        with no_network():
            model = func(**m.ARGS)
    except Exception as e:
        if _network_error(e):
            raise ConfigError(f, f"{pre}MODEL.FACTORY", m.FACTORY,
                              "a factory that builds the model offline: it tried to reach the network "
                              f"({type(e).__name__}: {e}); nnsplice never downloads: save the weights to a local "
                              "file and name it in MODEL.WEIGHTS") from None
        raise ConfigError(f, f"{pre}MODEL.FACTORY", m.FACTORY,
                          f"a function returning a torch.nn.Module; it raised {type(e).__name__}: {e}") from None
    if not isinstance(model, torch.nn.Module):
        raise ConfigError(f, f"{pre}MODEL.FACTORY", m.FACTORY,
                          f"a function returning a torch.nn.Module; it returned {type(model).__name__}")
    if m.WEIGHTS:
        load_weights(f, f"{pre}MODEL.WEIGHTS", model, resolve_path(f, m.WEIGHTS))
    return model.eval()


def load_weights(f: str, key: str, model, path: Path) -> None:
    """A state_dict, or a checkpoint holding one under state_dict/model, into ``model`` (strict)."""
    import torch

    try:
        with no_network():
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ConfigError(f, key, str(path), f"a torch state_dict file ({type(e).__name__}: {e})") from None
    if isinstance(sd, dict):
        for k in ("state_dict", "model", "model_state_dict"):
            if isinstance(sd.get(k), dict):
                sd = sd[k]
                break
    if not isinstance(sd, dict):
        raise ConfigError(f, key, str(path), f"a state_dict (a mapping of tensors); it holds {type(sd).__name__}")
    sd = {k.removeprefix("module."): v for k, v in sd.items()}
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[1:3] or [str(e)]
        raise ConfigError(f, key, str(path), f"weights of the FACTORY's model ({' '.join(s.strip() for s in first)})"
                          ) from None
