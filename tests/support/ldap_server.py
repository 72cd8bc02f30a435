"""A real OpenLDAP slapd on a free loopback port, with a small seeded directory."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from ldap3 import HASHED_SALTED_SHA, Connection, Server
from ldap3.utils.hashed import hashed

SUFFIX = "dc=londonsde,dc=test"
ROOT_DN = f"cn=admin,{SUFFIX}"
ROOT_PW = "root-secret"
SERVICE_DN = f"cn=gateway,ou=services,{SUFFIX}"
SERVICE_PW = "service-secret"
PEOPLE = f"ou=people,{SUFFIX}"
GROUPS = f"ou=groups,{SUFFIX}"

# uid -> (common name, password, groups)
DIRECTORY_USERS: dict[str, tuple[str, str, list[str]]] = {
    "alice": ("Alice Directory", "alice-ldap-password", ["sde-researchers"]),
    "bob": ("Bob Directory", "bob-ldap-password", ["sde-researchers", "sde-dac"]),
    "carol": ("Carol (no gateway groups)", "carol-ldap-password", []),
    "star*user": ("Star User", "star-ldap-password", ["sde-researchers"]),
}
GROUP_ROLES = {"sde-researchers": ["researcher"], "sde-dac": ["dac_member"], "sde-auditors": ["auditor"]}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


SLAPD_CONF = """\
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile {dir}/slapd.pid
database mdb
maxsize 16777216
suffix "{suffix}"
rootdn "{rootdn}"
rootpw {rootpw}
directory {dir}/db
access to attrs=userPassword by self read by anonymous auth by * none
access to * by dn.exact="{service}" read by self read by * none
"""


@dataclass
class LdapServer:
    url: str
    process: subprocess.Popen[bytes]
    directory: Path

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def start_slapd(directory: Path) -> LdapServer:
    slapd = shutil.which("slapd") or "/usr/sbin/slapd"
    if not Path(slapd).exists():
        raise RuntimeError("slapd is not installed: run `make test`, which installs it")
    (directory / "db").mkdir(parents=True)
    conf = directory / "slapd.conf"
    conf.write_text(SLAPD_CONF.format(dir=directory, suffix=SUFFIX, rootdn=ROOT_DN, rootpw=ROOT_PW,
                                      service=SERVICE_DN))
    port = free_port()
    url = f"ldap://127.0.0.1:{port}"
    log = (directory / "slapd.log").open("wb")
    process = subprocess.Popen([slapd, "-f", str(conf), "-h", f"{url}/", "-d", "0"], stdout=log, stderr=log)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("slapd exited: " + (directory / "slapd.log").read_text()[-2000:])
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            time.sleep(0.05)
    else:
        process.kill()
        raise RuntimeError("slapd did not start listening")
    server = LdapServer(url, process, directory)
    seed(url)
    return server


def seed(url: str) -> None:
    conn = Connection(Server(url), ROOT_DN, ROOT_PW, auto_bind=True)
    conn.add(SUFFIX, ["dcObject", "organization"], {"o": "London SDE test", "dc": "londonsde"})
    for ou in ("people", "groups", "services"):
        conn.add(f"ou={ou},{SUFFIX}", ["organizationalUnit"], {"ou": ou})
    conn.add(SERVICE_DN, ["organizationalRole", "simpleSecurityObject"],
             {"cn": "gateway", "userPassword": hashed(HASHED_SALTED_SHA, SERVICE_PW)})
    members: dict[str, list[str]] = {}
    for uid, (cn, password, groups) in DIRECTORY_USERS.items():
        dn = f"uid={uid},{PEOPLE}"
        ok = conn.add(dn, ["inetOrgPerson"], {"uid": uid, "cn": cn, "sn": cn.split()[-1],
                                             "mail": f"{uid.replace('*', '')}@example.nhs.uk",
                                             "userPassword": hashed(HASHED_SALTED_SHA, password)})
        assert ok, conn.result
        for group in groups:
            members.setdefault(group, []).append(dn)
    for group in GROUP_ROLES:
        conn.add(f"cn={group},{GROUPS}", ["groupOfNames"],
                 {"cn": group, "member": members.get(group) or [SERVICE_DN]})
    conn.unbind()
