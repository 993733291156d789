"""A ``python`` model source: FACTORY builds a torch.nn.Module, WEIGHTS (a local file) fills it.

The loading itself (no downloads, ``no_network``) is configs.python_factory, shared with fusion's
task files; here only what the pipeline's rows add.
"""
from __future__ import annotations

from configs.python_factory import (NetworkBlocked, build_python_model, factory_function,  # noqa: F401  (re-exported)
                                    load_weights, no_network)
from configs.user_models import ModelEntry, resolve_path
from converter.build import sha256_file


def weights_id(f: str, entry: ModelEntry) -> str:
    """The result row's ``weights``: ``factory``, or the sha256 of the weights file."""
    return sha256_file(resolve_path(f, entry.MODEL.WEIGHTS)) if entry.MODEL.WEIGHTS else "factory"
