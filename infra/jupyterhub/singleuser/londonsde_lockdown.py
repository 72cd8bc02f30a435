"""Jupyter server extension: refuse raw file downloads and notebook export in a workspace.

The sandbox has no network route out, so what remains is the researcher's browser. The
server's /files/ handler (download, "open in new tab"), /view/ (a page around /files/) and /nbconvert/ (export
to HTML, PDF, script...) hand whole files to the browser; this extension answers 403 on all three (the contents
API is policed by londonsde_egress). Extension
handlers are registered ahead of the server's own, so they take precedence. Results leave a
workspace only through outputs/ and the gateway's output checking.
"""

from __future__ import annotations

from typing import Any

from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.utils import url_path_join
from tornado import web

REFUSAL = "Downloads are disabled in this workspace: save results to outputs/ and request their release."


class RefuseHandler(JupyterHandler):
    """403 for every method, whoever asks."""

    def _refuse(self, *args: Any, **kwargs: Any) -> None:
        raise web.HTTPError(403, REFUSAL)

    get = head = post = put = delete = _refuse


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "londonsde_lockdown"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    base = serverapp.web_app.settings["base_url"]
    serverapp.web_app.add_handlers(
        ".*$",
        [
            (url_path_join(base, r"/files/(.*)"), RefuseHandler),
            (url_path_join(base, r"/nbconvert/(.*)"), RefuseHandler),
            # /view/ is a page that shows a file from /files/ in a frame: refused too, so it says why.
            (url_path_join(base, r"/view/(.*)"), RefuseHandler),
        ],
    )
    serverapp.log.info("londonsde_lockdown: /files/, /view/ and /nbconvert/ refused")
