"""User-facing errors: one line that names the thing that is wrong and what is allowed."""


class CifarlabError(Exception):
    """An error caused by the user's input (config, data, files), reported without a traceback."""


class ConfigError(CifarlabError):
    """A config key or value that is not allowed."""


class DataError(CifarlabError):
    """A dataset that cannot be read or does not have the expected layout."""


class CheckpointError(CifarlabError):
    """A checkpoint or weights file that cannot be loaded safely or does not match the model."""


class TrainingDiverged(CifarlabError):
    """The loss became NaN or infinite."""
