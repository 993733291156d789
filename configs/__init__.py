"""Config files: NN-Stretch's schema read as it is, plus nnsplice's DEPLOY section.

Public surface: load_config, find_configs, config_to_dict, PipelineConfig, and the error classes.
The YAML files themselves live in the sub-folders (configs/host, configs/fusion, ...).
"""
from .errors import ConfigError, DeviceError, UserError
from .loader import config_to_dict, find_configs, load_config, processors_of
from .schema import PipelineConfig

__all__ = ["ConfigError", "DeviceError", "UserError", "PipelineConfig", "config_to_dict", "find_configs",
           "load_config", "processors_of"]
