"""Library version written into every record, so a verdict can be traced to the rules that made it."""

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

# Written by infra/jupyterhub/build_singleuser_env.sh into the workspace's copy, which is not an installed distribution.
RELEASE_FILE = Path(__file__).with_name("RELEASE")

try:
    __version__ = version("londonsde")
except PackageNotFoundError:
    # The workspace's copy names the release it came from; a source tree never installed nor built has none.
    __version__ = RELEASE_FILE.read_text().strip() if RELEASE_FILE.is_file() else "0+unknown"
