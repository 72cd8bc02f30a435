"""Who ran a command on the server, for the audit log (every `sde` command that changes something records it).

Taken from what the kernel keeps (the process's user id, and the login of the session it runs in), never from
environment variables, which whoever runs the command can set to anyone's name.
"""

from __future__ import annotations

import os
import pwd
from pathlib import Path

LOGINUID = Path("/proc/self/loginuid")
_NO_LOGIN = 4294967295  # (uid_t)-1: no login session recorded (a service, most containers)


def _account(uid: int) -> str:
    """The account's name, cut to 40 characters: two of them and the words between fit the actor column (100)."""
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = f"uid {uid}"
    return name if len(name) <= 40 else name[:39] + "…"


def _login_uid() -> int | None:
    """The account that logged in to start this session (pam_loginuid), kept by the kernel across sudo and su and
    changeable only by root; None where none was recorded."""
    try:
        uid = int(LOGINUID.read_text().strip())
    except (OSError, ValueError):
        return None
    return None if uid == _NO_LOGIN else uid


def cli_actor() -> str:
    """Who ran the command, for the audit log: the account the process runs as, from its user id (getpass.getuser
    would take the USER or LOGNAME variables, which anyone can set to another person's name), and who logged in, from
    the kernel, when that is someone else (``sudo -iu sde``). Only where the kernel keeps no login is SUDO_USER added:
    whoever runs as the service account can set it, so there it is at worst a claim beside the real account."""
    uid = os.getuid()
    account = _account(uid)
    login = _login_uid()
    if login is not None:
        return f"cli:{account}" + (f" (logged in as {_account(login)})" if login != uid else "")
    through = os.environ.get("SUDO_USER", "").strip()[:32]
    if not through.isprintable():
        through = ""
    return f"cli:{account}" + (f" (sudo from {through})" if through and through != account else "")
