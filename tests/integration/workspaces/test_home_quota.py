"""Home images on real loop devices: an older home moves in, a bigger tier grows it, a reboot is survived."""

from __future__ import annotations

import os
import shutil
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "infra" / "jupyterhub"))

import home_quota  # noqa: E402

MIB = 1024**2
pytestmark = [pytest.mark.skipif(os.geteuid() != 0 or shutil.which("mkfs.ext4") is None,
                                 reason="needs root and e2fsprogs to loop-mount ext4 images")]


@pytest.fixture
def homes(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "homes"
    root.mkdir(mode=0o700)
    yield root
    home_quota.unmount_all(root)


def test_an_older_home_moves_into_its_image_whole(homes: Path) -> None:
    home = homes / "p1" / "u7"
    (home / "outputs").mkdir(parents=True)
    (home / "analysis.ipynb").write_text("{}")
    (home / "outputs" / "table.csv").write_text("a,b\n1,2\n")
    (home / "link").symlink_to("/etc/shadow")
    fresh = home_quota.ensure_mounted(homes, "u7", "p1", home, 64 * MIB, uid=20007)
    assert fresh is False  # not a new home: no template over the researcher's files
    assert home_quota.is_mounted(home)
    assert (home / "analysis.ipynb").read_text() == "{}"
    assert (home / "outputs" / "table.csv").read_text() == "a,b\n1,2\n"
    assert os.readlink(home / "link") == "/etc/shadow"  # copied as a link, never followed
    home_quota.unmount(home)
    assert list(home.iterdir()) == []  # the old copy is gone from the host folder


def test_a_home_too_big_for_its_quota_stays_as_it_was(homes: Path) -> None:
    home = homes / "p1" / "u8"
    home.mkdir(parents=True)
    with open(home / "big.bin", "wb") as fh:
        fh.write(os.urandom(40 * MIB))
    with pytest.raises(home_quota.QuotaError, match="does not fit"):
        home_quota.ensure_mounted(homes, "u8", "p1", home, 32 * MIB, uid=20008)
    assert (home / "big.bin").stat().st_size == 40 * MIB
    assert not home_quota.image_path(homes, "u8", "p1").exists()
    assert not home_quota.is_mounted(home)


def test_a_bigger_tier_grows_the_home_and_a_reboot_is_survived(homes: Path) -> None:
    home = homes / "p2" / "u9"
    home.parent.mkdir(parents=True)
    assert home_quota.ensure_mounted(homes, "u9", "p2", home, 64 * MIB, uid=20009) is True
    assert home.stat().st_uid == 20009 and not (home / "lost+found").exists()
    (home / "work.txt").write_text("kept")
    small = os.statvfs(home).f_blocks * os.statvfs(home).f_frsize
    home_quota.ensure_mounted(homes, "u9", "p2", home, 128 * MIB, uid=20009)
    grown = os.statvfs(home).f_blocks * os.statvfs(home).f_frsize
    assert grown > small * 1.8
    home_quota.ensure_mounted(homes, "u9", "p2", home, 32 * MIB, uid=20009)  # a smaller tier never shrinks it
    assert os.statvfs(home).f_blocks * os.statvfs(home).f_frsize == grown
    image = home_quota.image_path(homes, "u9", "p2")
    assert stat.S_IMODE(image.stat().st_mode) == 0o600
    home_quota.unmount_all(homes)  # as after a reboot
    assert not home_quota.is_mounted(home) and not (home / "work.txt").exists()
    assert home_quota.mount_all(homes) == 1  # what the hub does when it starts
    assert (home / "work.txt").read_text() == "kept"


def test_a_symlink_in_place_of_the_home_is_refused(homes: Path, tmp_path: Path) -> None:
    (homes / "p3").mkdir()
    (homes / "p3" / "u1").symlink_to(tmp_path)
    with pytest.raises(home_quota.QuotaError, match="symbolic link"):
        home_quota.ensure_mounted(homes, "u1", "p3", homes / "p3" / "u1", 64 * MIB, uid=20001)


def test_the_team_folder_is_an_image_of_its_own_for_the_projects_group(homes: Path, tmp_path: Path) -> None:
    (homes / "p4").mkdir()
    team = home_quota.ensure_team_mounted(homes, "p4", 64 * MIB, gid=20050)
    assert team == homes / "p4" / ".team" and home_quota.is_mounted(team)
    info = team.stat()
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (0, 20050, 0o2770)
    assert os.getxattr(team, "system.posix_acl_default")  # the group may write what any member makes
    # a member plants links there; starting again (root) follows none of them
    outside = tmp_path / "outside"
    outside.mkdir(mode=0o700)
    (team / "link").symlink_to(outside)
    # a bigger tier: never grown under running workspaces (other members may be using it), but once unmounted
    home_quota.ensure_team_mounted(homes, "p4", 128 * MIB, gid=20050)
    assert stat.S_IMODE(outside.stat().st_mode) == 0o700 and outside.stat().st_gid == 0
    assert os.statvfs(team).f_blocks * os.statvfs(team).f_frsize < 100 * MIB
    home_quota.unmount_all(homes)  # as after a reboot: the hub mounts the homes, the team folder waits for a start
    assert home_quota.mount_all(homes) == 0 and not home_quota.is_mounted(team)
    home_quota.ensure_team_mounted(homes, "p4", 128 * MIB, gid=20050)
    assert os.statvfs(team).f_blocks * os.statvfs(team).f_frsize > 100 * MIB and (team / "link").is_symlink()
    # a link in place of the team folder itself is refused
    (homes / "p5").mkdir()
    (homes / "p5" / ".team").symlink_to(outside)
    with pytest.raises(home_quota.QuotaError, match="symbolic link"):
        home_quota.ensure_team_mounted(homes, "p5", 64 * MIB, gid=20051)
