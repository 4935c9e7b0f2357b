"""Configuration: typed sections, one per feature, validated with errors a user can act on.

`section.py` is what a feature subclasses, `types.py` the field types with
their words, `core.py` the bridge's own `mqtt:` and `bridge:` sections,
`loader.py` reading and validating a file, `errors.py` the wording of problems.
"""

from bridge.config.loader import (ConfigError, config_model, defaults, load_config, read_yaml,
                                  redacted, secret_values, validate_config)
from bridge.config.section import ExtensionSection, Problem, Section

__all__ = ["ConfigError", "ExtensionSection", "Problem", "Section", "config_model", "defaults",
           "load_config", "read_yaml", "redacted", "secret_values", "validate_config"]
