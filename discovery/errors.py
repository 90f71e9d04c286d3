"""Errors that the CLI turns into one clear line and a non-zero exit code."""


class DiscoveryError(Exception):
    """A user-facing error: bad input, missing file, locked run directory, ...

    The CLI prints `discovery: error: <message>` and exits with `exit_code`.
    """

    exit_code = 2

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class ConfigError(DiscoveryError):
    """Invalid configuration: unknown key, wrong type, bad YAML, missing file."""
