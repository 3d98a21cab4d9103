"""The one error base class of givetake.

Every error a user can act on (a bad file, a missing model, a refused promotion...) derives from
:class:`GivetakeError`; its message names the file, row or option and what to do. The command
line catches this one type and prints the message as one line (exit status 2), and the server
turns it into a 400. Anything else is a bug and keeps its traceback.

This module sits below every layer (labels, core, training, serving, cli) so that each of them
can raise these errors.
"""

from __future__ import annotations


class GivetakeError(Exception):
    """An error with a message meant for the user: what is wrong, where, and what to do."""


class ConfigError(GivetakeError, ValueError):
    """An invalid option or configuration value; the message names the option."""


class DataError(GivetakeError, ValueError):
    """A problem in an input file; the message names the file, the row and the problem."""


class ModelNotFound(GivetakeError, FileNotFoundError):
    """A model reference that names no model directory and no BentoML store model."""


class ModelLoadError(GivetakeError, RuntimeError):
    """A model directory is unusable; the message names the path and the problem."""
