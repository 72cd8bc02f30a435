"""Library version written into every record, so a verdict can be traced to the rules that made it."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("londonsde")
except PackageNotFoundError:  # a copy outside an installed distribution (the workspace environment)
    try:
        from ._release import VERSION as __version__  # written by infra/jupyterhub/build_singleuser_env.sh
    except ImportError:  # a source tree that was never installed nor built
        __version__ = "0+unknown"
