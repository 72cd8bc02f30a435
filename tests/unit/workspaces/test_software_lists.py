"""The workspace's software lists: every Python package pinned, the R list holding what the R work needs."""

from __future__ import annotations

import pytest

from gateway.workspaces import packages


def test_the_lists_parse_every_python_package_pinned_and_r_present() -> None:
    listed = packages.approved_software()
    assert all(p.version for p in listed["python"])
    names = {p.name for p in listed["python"]}
    assert {"jupyterhub", "pandas", "pyarrow", "opendp", "ipykernel"} <= names
    assert {"r-base-core", "r-cran-irkernel", "r-cran-survival", "r-cran-data.table",
            "r-cran-reticulate"} <= {p.name for p in listed["r"]}


@pytest.mark.parametrize("line", ["pandas", "pandas>=2", "pandas==", "pandas==2.3; rm", "-e git+https://x/y"])
def test_an_unpinned_python_requirement_is_refused(line: str) -> None:
    with pytest.raises(ValueError, match="not pinned"):
        packages.parse_python([line])


def test_r_lines_are_debian_names_optionally_pinned() -> None:
    assert packages.parse_r(["r-cran-lme4=1.1-35-1"])[0].version == "1.1-35-1"
    with pytest.raises(ValueError):
        packages.parse_r(["R-CRAN-X"])
