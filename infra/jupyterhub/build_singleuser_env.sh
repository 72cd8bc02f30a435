#!/usr/bin/env bash
# Build the workspace (single-user server) virtualenv from Debian's /usr/bin/python3.
#
# Why a separate venv: the project's .venv is built from a Python under /root (mode 0700),
# which the unprivileged workspace uid cannot execute. This venv lives outside /root, is
# world-readable, and is bound read-only into every sandbox.
#
# Usage: infra/jupyterhub/build_singleuser_env.sh [PREFIX]
#   PREFIX defaults to $LONDONSDE_SINGLEUSER_PREFIX or /opt/londonsde/singleuser.
# Idempotent: pip runs only when the requirements hash differs from the one recorded in the
# venv; the repo's pure disclosure_control package and the server settings are re-copied on
# every run (cheap) so the workspace always sees the current library.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
prefix="${1:-${LONDONSDE_SINGLEUSER_PREFIX:-/opt/londonsde/singleuser}}"
python="${LONDONSDE_SINGLEUSER_PYTHON:-/usr/bin/python3}"
reqs="$here/singleuser-requirements.txt"
case "$prefix" in
    /*/*) ;;
    *) echo "refusing prefix '$prefix': give an absolute path at least two levels deep" >&2; exit 2 ;;
esac
stamp="$prefix/.requirements.sha256"

want="$( (cat "$reqs"; "$python" --version) | sha256sum | cut -d' ' -f1)"
have="$(cat "$stamp" 2>/dev/null || true)"

umask 022
if [[ "$want" != "$have" || ! -x "$prefix/bin/jupyterhub-singleuser" ]]; then
    echo "building single-user env in $prefix"
    rm -rf "$prefix"
    mkdir -p "$(dirname "$prefix")"
    "$python" -m venv "$prefix"
    # (pip's notes about unused local index folders are noise here)
    "$prefix/bin/python" -m pip install --quiet --upgrade pip 2> >(grep -v "is ignored" >&2)
    "$prefix/bin/python" -m pip install --quiet -r "$reqs" 2> >(grep -v "is ignored" >&2)
    echo "$want" > "$stamp"
else
    echo "single-user env in $prefix is up to date"
fi

# The pure disclosure_control library, copied (not an editable install) so the workspace uid
# imports exactly this tree and never needs to read the repo.
site="$("$prefix/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
rm -rf "$site/disclosure_control"
cp -r "$repo/disclosure_control" "$site/disclosure_control"
find "$site/disclosure_control" -name __pycache__ -prune -exec rm -rf {} +
# The copy is not an installed distribution, so it carries the release it came from (pyproject.toml's version):
# every record made in a workspace names the rules that made it, as the gateway's own records do.
release="$("$python" -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' \
    "$repo/pyproject.toml")"
echo "$release" > "$site/disclosure_control/RELEASE"

# The server extension refusing /files/ and /nbconvert/ (see singleuser/londonsde_lockdown.py), and the one
# handing outputs over to the gateway through the hub (singleuser/londonsde_handover.py; kernels import it too).
cp "$here/singleuser/londonsde_lockdown.py" "$site/londonsde_lockdown.py"
cp "$here/singleuser/londonsde_handover.py" "$site/londonsde_handover.py"
# The security tier: the server extension (page config, terminals) and the JupyterLab extension blocking copy out and
# large pastes in the high tier, built here with JupyterLab's builder (jupyter-builder, from the jupyterlab
# requirement) from infra/jupyterhub/labextension; its npm packages come from its package-lock.json. The built
# bundle is not kept in git: it is rebuilt on every run (about two seconds).
cp "$here/labextension/londonsde_security_tier.py" "$site/londonsde_security_tier.py"
labext="$here/labextension"
lock_sum="$(sha256sum "$labext/package-lock.json" | cut -d' ' -f1)"
if [[ "$(cat "$labext/node_modules/.lock.sha256" 2>/dev/null || true)" != "$lock_sum" ]]; then
    (cd "$labext" && npm ci --no-audit --no-fund --loglevel=error)
    echo "$lock_sum" > "$labext/node_modules/.lock.sha256"
fi
rm -rf "$labext/build"
PATH="$prefix/bin:$PATH" "$prefix/bin/jupyter-builder" build "$labext" >/dev/null
target="$prefix/share/jupyter/labextensions/@londonsde/security-tier"
rm -rf "$target"
mkdir -p "$(dirname "$target")"
cp -r "$labext/build/labextension" "$target"
# The browser egress policy and byte counter (singleuser/londonsde_egress.py).
cp "$here/singleuser/londonsde_egress.py" "$site/londonsde_egress.py"

# Server and JupyterLab settings that lock down downloads/export, found by jupyter via the
# venv's sys.prefix (etc/jupyter and share/jupyter/lab/settings).
mkdir -p "$prefix/etc/jupyter" "$prefix/share/jupyter/lab/settings"
cp "$here/singleuser/jupyter_server_config.py" "$prefix/etc/jupyter/jupyter_server_config.py"
cp "$here/singleuser/overrides.json" "$prefix/share/jupyter/lab/settings/overrides.json"
mkdir -p "$prefix/etc/jupyter/labconfig"
# The workspace's Jupyter user config dir (JUPYTER_CONFIG_DIR, set by the spawners): empty and read-only, so nothing
# a researcher writes in their home can change the server's settings (see jupyter_paths_env in sandbox_spawner.py).
# Its one file tells jupyter_core that IPython-era settings were already migrated (it would write it there itself).
rm -rf "$prefix/etc/jupyter-user"
mkdir -p "$prefix/etc/jupyter-user"
touch "$prefix/etc/jupyter-user/migrated"
cp "$here/singleuser/page_config.json" "$prefix/etc/jupyter/labconfig/page_config.json"
# The outputs helper, also importable from the env (a new home gets its own copy from notebooks_template/): the R
# package below calls it, so a table saved from R is written and recorded by the very same code.
cp "$repo/notebooks_template/outputs_helper.py" "$site/outputs_helper.py"

# R (Debian's r-base-core and r-cran-* packages, from infra/setup/system-deps.sh): the londonsde R package
# (infra/jupyterhub/r/londonsde) in a library of this env, and the R kernel's spec in the env's own kernel folder
# (the only one the server reads, see londonsde_egress). The kernel finds the package through R_LIBS_SITE and
# the env's Python (disclosure_control, outputs_helper) through RETICULATE_PYTHON.
command -v R >/dev/null || { echo "R is missing: run infra/setup/system-deps.sh first" >&2; exit 1; }
rlib="$prefix/lib/R/site-library"
rpkg="$here/r/londonsde"
r_sum="$( (find "$rpkg" -type f -print0 | sort -z | xargs -0 sha256sum; R --version | head -n 1) | sha256sum | cut -d' ' -f1)"
if [[ "$(cat "$rlib/.londonsde.sha256" 2>/dev/null || true)" != "$r_sum" || ! -d "$rlib/londonsde" ]]; then
    mkdir -p "$rlib"
    rm -rf "$rlib/londonsde"
    R CMD INSTALL --no-docs --no-html --no-multiarch --library="$rlib" "$rpkg" > "$prefix/.r-install.log" 2>&1 \
        || { cat "$prefix/.r-install.log" >&2; exit 1; }
    echo "$r_sum" > "$rlib/.londonsde.sha256"
fi
r_libs="$rlib:/usr/local/lib/R/site-library:/usr/lib/R/site-library:/usr/lib/R/library"
kernel="$prefix/share/jupyter/kernels/ir"
rm -rf "$kernel"
mkdir -p "$kernel"
cp /usr/lib/R/site-library/IRkernel/kernelspec/logo-64x64.png /usr/lib/R/site-library/IRkernel/kernelspec/logo-svg.svg \
    "$kernel/"
cat > "$kernel/kernel.json" <<JSON
{
  "argv": ["/usr/lib/R/bin/R", "--no-echo", "--no-restore", "--no-save", "-e", "IRkernel::main()",
           "--args", "{connection_file}"],
  "display_name": "R",
  "language": "R",
  "env": {"R_LIBS_SITE": "$r_libs", "R_LIBS_USER": "", "RETICULATE_PYTHON": "$prefix/bin/python"}
}
JSON

"$prefix/bin/python" -m compileall -q "$site/disclosure_control" "$site/londonsde_lockdown.py" \
    "$site/londonsde_handover.py" "$site/londonsde_security_tier.py" "$site/londonsde_egress.py" \
    "$site/outputs_helper.py" >/dev/null
chmod -R a+rX "$prefix"
echo "ok: $prefix"
