"""A disk quota for each workspace home: the home is an ext4 filesystem in a file of the tier's size, loop-mounted.

Why an image and not project quotas: the host's filesystem here (ext4 on the root device) was made without the
`quota`/`project` features, and turning them on needs it unmounted; an image works on any filesystem, and a full
home fails with "No space left on device" inside the workspace while the host's disk is untouched.

Layout: the image of <homes_root>/<project>/<user> is <homes_root>/.images/<project>/<user>.ext4 (root only,
0600). Images are sparse, so a home takes on the host only what the researcher wrote. Homes stay mounted when
their server stops (the gateway never reads them: outputs are handed over through the hub); `mount_all` mounts
them again after a reboot and `unmount_all` takes them down (uninstall, tests, the end of `sde demo`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

from gateway.workspaces.spec import check_project_id, check_username, team_folder

IMAGES = ".images"
TEAM_IMAGE = ".team.ext4"  # the team folder's image; '.team' is no hub username, so never a person's home
MOUNT_OPTIONS = "loop,nosuid,nodev,noatime"


class QuotaError(RuntimeError):
    """A home could not be given its quota (the message is for the operator's log)."""


def _run(*argv: str, ok: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    if result.returncode not in ok:
        raise QuotaError(f"{' '.join(argv)}: {result.stderr.strip() or result.returncode}")
    return result


def image_path(homes_root: str | Path, username: str, project_id: str) -> Path:
    return Path(homes_root) / IMAGES / check_project_id(project_id) / f"{check_username(username)}.ext4"


def is_mounted(path: Path) -> bool:
    return os.path.ismount(path)


def create_image(image: Path, size: int, uid: int, gid: int | None = None) -> None:
    """A sparse file of `size` bytes holding an empty ext4 whose root belongs to `uid` (and `gid`, by default the
    uid's own group), with no reserved blocks."""
    gid = uid if gid is None else gid
    image.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(image.parent.parent, 0o700)
    os.chmod(image.parent, 0o700)
    fd = os.open(image, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.ftruncate(fd, size)
    finally:
        os.close(fd)
    try:
        _run("mkfs.ext4", "-q", "-F", "-m", "0", "-L", "sde-home",
             "-E", f"root_owner={uid}:{gid},lazy_itable_init=1,lazy_journal_init=1", str(image))
    except QuotaError:
        image.unlink(missing_ok=True)
        raise


def mount(image: Path, home: Path) -> None:
    _run("mount", "-o", MOUNT_OPTIONS, str(image), str(home))
    with contextlib.suppress(OSError):
        (home / "lost+found").rmdir()  # empty on a fresh filesystem; nothing a researcher needs to see


def unmount(home: Path) -> None:
    """Unmount a home (lazily if something still holds it; the loop device goes once it is free)."""
    if not is_mounted(home):
        return
    if subprocess.run(["umount", str(home)], capture_output=True, check=False).returncode != 0:
        subprocess.run(["umount", "-l", str(home)], capture_output=True, check=False)


def grow(image: Path, home: Path, size: int) -> None:
    """Grow a home to `size` (a bigger tier) while no sandbox uses it; a smaller tier never shrinks one.

    Offline (unmount, check, resize, mount): the kernel refuses an online resize of these small-journal images.
    """
    if image.stat().st_size >= size:
        return
    was_mounted = is_mounted(home)
    unmount(home)
    os.truncate(image, size)
    _run("e2fsck", "-f", "-p", str(image), ok=(0, 1))  # 1: fixed something small (it puts lost+found back)
    _run("resize2fs", str(image))
    if was_mounted:
        mount(image, home)


def move_into_image(home: Path, image: Path) -> None:
    """A home from before quotas: copy its files into the fresh image, then remove the old folder's contents.

    If they do not fit, the image is removed and the home is left exactly as it was.
    """
    staging = Path(tempfile.mkdtemp(prefix="sde-home-", dir=image.parent))
    try:
        mount(image, staging)
        try:
            copied = subprocess.run(["cp", "-a", "--", f"{home}/.", f"{staging}/"], capture_output=True, text=True,
                                    check=False)
        finally:
            unmount(staging)
        if copied.returncode != 0:
            image.unlink(missing_ok=True)
            raise QuotaError(f"the home {home} does not fit its quota: {copied.stderr.strip()[-300:]}")
    finally:
        staging.rmdir()
    for entry in list(home.iterdir()):
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def ensure_mounted(homes_root: str | Path, username: str, project_id: str, home: Path, size: int, uid: int) -> bool:
    """Give the home its quota: create, fill from an older home, mount and grow its image. True if it is new."""
    image = image_path(homes_root, username, project_id)
    if home.is_symlink():
        raise QuotaError(f"{home} is a symbolic link")
    home.mkdir(mode=0o700, exist_ok=True)
    fresh = False
    if not image.exists():
        create_image(image, size, uid)
        fresh = True
        if not is_mounted(home) and any(home.iterdir()):
            move_into_image(home, image)
            fresh = False
    grow(image, home, size)
    if not is_mounted(home):
        mount(image, home)
    return fresh


# A default POSIX ACL (user::rwx group::rwx other::---) in the kernel's xattr form: version 2, then (tag, perm, id)
# for ACL_USER_OBJ, ACL_GROUP_OBJ and ACL_OTHER. With a default ACL the creator's umask is not applied, so what a
# member makes in the team folder is writable by the team whatever umask their tools run with.
_TEAM_DEFAULT_ACL = (struct.pack("<I", 2) + struct.pack("<HHI", 0x01, 7, 0xFFFFFFFF)
                     + struct.pack("<HHI", 0x04, 7, 0xFFFFFFFF) + struct.pack("<HHI", 0x20, 0, 0xFFFFFFFF))


def team_image_path(homes_root: str | Path, project_id: str) -> Path:
    return Path(homes_root) / IMAGES / check_project_id(project_id) / TEAM_IMAGE


def ensure_team_mounted(homes_root: str | Path, project_id: str, size: int, gid: int) -> Path:
    """Give the project's team folder its own ext4 image (as a home, of the project's tier size) and mount it.

    A bigger tier grows it when it is next mounted from scratch (after a reboot, or `unmount_all`), never under
    a running workspace.

    Its root belongs to root and the project's group, mode 2770 (setgid: what is made inside stays in the group)
    with a default ACL giving the group write. Only the root of the mount is touched, never a path inside it, so
    a link a member planted there is never followed here.
    """
    team = team_folder(homes_root, project_id)
    image = team_image_path(homes_root, project_id)
    if team.is_symlink():
        raise QuotaError(f"{team} is a symbolic link")
    team.mkdir(mode=0o700, exist_ok=True)
    if not image.exists():
        create_image(image, size, 0, gid)
    if not is_mounted(team):
        # Grown only while no sandbox can be using it: other members' running workspaces hold the mount (unlike a
        # home, which only its owner's one server uses), and an offline resize under them would corrupt it.
        grow(image, team, size)
        mount(image, team)
    fd = os.open(team, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        os.fchown(fd, 0, gid)
        os.fchmod(fd, 0o2770)
        os.setxattr(fd, "system.posix_acl_default", _TEAM_DEFAULT_ACL)
    finally:
        os.close(fd)
    return team


def _homes(homes_root: Path) -> list[tuple[Path, Path]]:
    found = []
    images = homes_root / IMAGES
    if images.is_dir():
        for project in sorted(images.iterdir()):
            for image in sorted(project.glob("*.ext4")):
                found.append((image, homes_root / project.name / image.name.removesuffix(".ext4")))
    return found


def mount_all(homes_root: str | Path) -> int:
    """Mount every home that has an image and is not mounted (after a reboot); returns how many.

    Team folders are left to their project's next workspace start (ensure_team_mounted), which grows them first
    if the tier grew: the gateway never reads them, so nothing needs them mounted before."""
    mounted = 0
    for image, home in _homes(Path(homes_root)):
        if image.name == TEAM_IMAGE:
            continue
        if home.is_dir() and not home.is_symlink() and not is_mounted(home):
            mount(image, home)
            mounted += 1
    return mounted


def unmount_all(homes_root: str | Path) -> None:
    for _image, home in _homes(Path(homes_root)):
        unmount(home)
