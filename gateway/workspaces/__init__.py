"""Workspaces: the gateway's side of the JupyterHub integration.

Pure adapters (no Flask, no database): the sign-in ticket format shared with the hub
(`tickets`), the size tiers and spawn options (`spec`), the JupyterHub REST client (`hub`)
and the Kubernetes settings renderer (`kubernetes`).
"""
