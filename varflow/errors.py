"""varflow's errors: one base, so a caller tells "cannot run as asked" from a bug.

Everything a user can fix derives from ``VarflowError``; anything else that escapes is a bug and
is reported as one (a traceback), never as "cannot run". The configuration and input errors are
also ``ValueError``s, as they were before this base existed, so callers catching ValueError keep
working.
"""


class VarflowError(Exception):
    """Base of every error a user can act on: the message names what is wrong and what to do."""


class ConfigurationError(VarflowError, ValueError):
    """A setting, option, parameter or secret that cannot work (checked before any work or payment)."""


class InputError(VarflowError, ValueError):
    """Data handed to varflow that it cannot use: an image file, a folder, a query."""


class BackendError(VarflowError):
    """A generation backend failed a call (its ``outcome`` says how; see GenerationError)."""


class StoreError(VarflowError):
    """The data directory's records or shared state cannot be read or written as they must be."""
