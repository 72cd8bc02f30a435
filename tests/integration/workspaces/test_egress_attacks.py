"""Independent attacks on the workspace browser egress policy (issue 13 part c), on a real hub and sandbox.

The contents API is policed (text and notebooks only, a size limit, no base64, no byte-for-byte copy of /data);
these attacks look for other doors in the same server through which a file the kernel wrote reaches the browser.

* JupyterLab's workspaces API (``/lab/api/workspaces/<name>``) serves any JSON file the kernel writes into
  ``~/.jupyter/lab/workspaces`` as it is, and the settings API (``/lab/api/settings/<plugin>``) serves the raw
  text of a user settings file (JSON5: comments carry anything). Before the fix both served a copy of a /data
  file of any size, past the contents API's limit. Now each answer is held to the same size limit.
"""

from __future__ import annotations

import json
from typing import Any

from tests.integration.workspaces.test_browser_egress import (  # noqa: F401  (fixtures)
    MISSING,
    backend,
    pytestmark,
    running,
)
from tests.integration.workspaces.workspace_client import Workspace

PLANT = r"""
import base64, json, os
from jupyterlab_server.workspaces_handler import WORKSPACE_EXTENSION, slugify
data = open("/data/manifest.json").read()
big = base64.b64encode(os.urandom(2_400_000)).decode()  # 3.2 MB of text, past the 2 MB contents limit
os.makedirs(".jupyter/lab/workspaces", exist_ok=True)
for name, payload in (("evil", data), ("huge", big)):
    with open(f".jupyter/lab/workspaces/{slugify(name)}{WORKSPACE_EXTENSION}", "w") as out:
        json.dump({"data": {"x": payload}, "metadata": {"id": "/" + name}}, out)
folder = ".jupyter/lab/user-settings/@jupyterlab/apputils-extension"
os.makedirs(folder, exist_ok=True)
with open(folder + "/themes.jupyterlab-settings", "w") as out:
    out.write("/*" + big + "*/\n{}")
print(json.dumps({"data_head": data[:60], "big_head": big[:60]}))
"""


def test_lab_workspaces_and_settings_apis_do_not_serve_what_the_kernel_wrote_past_the_limit(
        running: dict[str, Any]) -> None:  # noqa: F811  (the imported fixture)
    ws: Workspace = running["workspace"]
    kernel = ws.start_kernel()
    planted = ws.execute(kernel, PLANT)
    assert planted.error is None, planted.error
    heads = planted.json()
    assert len(heads["data_head"]) > 20

    # the contents API refuses the big file (control: the limit is in force here)
    ws.execute(kernel, "open('big.txt', 'w').write('q' * 3_000_000)")
    assert ws.api("GET", "/api/contents/big.txt").status_code == 403

    for path in ("/lab/api/workspaces/huge", "/lab/api/workspaces",
                 "/lab/api/settings/@jupyterlab/apputils-extension:themes", "/lab/api/settings"):
        response = ws.api("GET", path)
        assert heads["big_head"] not in response.text, (path, response.status_code, len(response.content))
        assert response.status_code == 403 and "larger than" in response.text, (path, response.status_code)

    # small JSON the researcher's own JupyterLab keeps still works (a workspace save and load)
    saved = ws.api("PUT", "/lab/api/workspaces/mine", data=json.dumps(
        {"data": {"layout-restorer:data": {}}, "metadata": {"id": "/mine"}}))
    assert saved.status_code == 204, saved.text[:300]
    loaded = ws.api("GET", "/lab/api/workspaces/mine")
    assert loaded.status_code == 200 and loaded.json()["metadata"]["id"] == "/mine"
    assert ws.api("GET", "/lab/api/settings/@jupyterlab/filebrowser-extension:browser").status_code == 200
