#!/usr/bin/env bash
# System packages from Debian. "demo" installs what the demo runs on; "test" adds what the tests drive:
# a real OpenLDAP slapd, Debian's Chromium for Playwright, and PostgreSQL (started if stopped).
set -euo pipefail
mode=${1:-demo}

demo_packages=(python3-venv bubblewrap nftables cgroup-tools iproute2 util-linux mount e2fsprogs libseccomp2)
# R for the workspaces (Debian's packages only: CRAN is not reachable from the environment), with what a typical
# epidemiology analysis uses; infra/jupyterhub/build_singleuser_env.sh registers the kernel.
demo_packages+=(r-base-core r-cran-irkernel r-cran-reticulate r-cran-jsonlite r-cran-survival r-cran-data.table
                r-cran-ggplot2 r-cran-dplyr r-cran-tidyr r-cran-broom r-cran-lubridate r-cran-epitools r-cran-lme4
                r-cran-sandwich r-cran-lmtest)
test_packages=(slapd ldap-utils chromium)

missing=()
want=("${demo_packages[@]}")
[ "$mode" = test ] && want+=("${test_packages[@]}")
for pkg in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done

install_pg=0
if [ "$mode" = test ] && ! command -v pg_ctlcluster >/dev/null 2>&1; then
  missing+=(postgresql)
  install_pg=1
fi

sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)

if [ ${#missing[@]} -gt 0 ]; then
  echo "Installing system packages: ${missing[*]}"
  "${sudo_cmd[@]}" apt-get update -qq
  # slapd's own service is not used: the tests start their own slapd on a free port.
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ "$mode" = test ]; then
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  if [ "$install_pg" = 1 ]; then
    # A machine we just installed PostgreSQL on: let local TCP connections in without a password,
    # as on the development machines, so the tests can create their own throwaway databases.
    hba=/etc/postgresql/$version/main/pg_hba.conf
    grep -q "londonsde-tests" "$hba" || "${sudo_cmd[@]}" sed -i \
      "1i host all all 127.0.0.1/32 trust # londonsde-tests" "$hba"
  fi
  if ! pg_lsclusters -h | awk '{print $4}' | grep -q online; then
    echo "Starting PostgreSQL $version"
    "${sudo_cmd[@]}" pg_ctlcluster --skip-systemctl-redirect "$version" main start
  fi
fi
