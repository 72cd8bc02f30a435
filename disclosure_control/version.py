"""Library version written into every record, so a verdict can be traced to the rules that made it."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("londonsde")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
