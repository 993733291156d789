"""Config files and the vocabulary every layer shares (the bottom layer of nnsplice).

Importing the package loads only the stdlib modules below (the plan runner imports them on
devices that have nothing but numpy and LiteRT): errors, vocabulary and the registry.
Config loading: ``configs.loader`` (NN-Stretch YAML + DEPLOY), ``configs.schema`` (the dataclasses).
The YAML files themselves live in the sub-folders (configs/host, configs/fusion, ...).
"""
from .errors import ConfigError, DeviceError, GraphError, InternalError, NnspliceError, ParseError, PlanError, UserError
from .registry import Registry
from .vocab import DELEGATES, DTYPES, PROCESSORS, TARGETS

__all__ = ["ConfigError", "DELEGATES", "DTYPES", "DeviceError", "GraphError", "InternalError", "NnspliceError",
           "PROCESSORS", "ParseError", "PlanError", "Registry", "TARGETS", "UserError"]
