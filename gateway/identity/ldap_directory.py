"""The LDAP adapter: find the user with a service bind, then bind as them to check the password.

Every value that goes into a search filter is escaped (RFC 4515), so a username such as
``*)(uid=*`` matches nobody instead of everybody.
"""

from __future__ import annotations

from dataclasses import dataclass

from ldap3 import SUBTREE, Connection, Server
from ldap3.core.exceptions import LDAPBindError, LDAPException
from ldap3.utils.conv import escape_filter_chars

from gateway.config import LdapSettings


class DirectoryUnavailable(Exception):
    """The directory could not be reached or answered with an error."""


class DirectoryImplausible(DirectoryUnavailable):
    """The directory answered, but so many entries were missing at once that its answer is not believed (a renamed
    base, an empty replica, a service account that cannot see people): nothing is changed on it."""


@dataclass(frozen=True)
class DirectoryUser:
    dn: str
    username: str
    display_name: str
    email: str | None
    groups: frozenset[str]
    entry_id: str = ""  # the entry's permanent id (``entry_id_attribute``), or its DN when the directory has none


class LdapDirectory:
    def __init__(self, settings: LdapSettings) -> None:
        self.settings = settings
        self.server = Server(settings.url, connect_timeout=settings.connect_timeout)

    def _service_connection(self) -> Connection:
        s = self.settings
        return Connection(self.server, user=s.bind_dn, password=s.bind_password, read_only=True,
                          auto_bind=True, receive_timeout=max(1, int(s.connect_timeout)))

    def user_filter(self, username: str) -> str:
        s = self.settings
        return (f"(&(objectClass={escape_filter_chars(s.user_object_class)})"
                f"({s.user_attribute}={escape_filter_chars(username)}))")

    def group_filter(self, dn: str) -> str:
        s = self.settings
        return (f"(&(objectClass={escape_filter_chars(s.group_object_class)})"
                f"({s.group_member_attribute}={escape_filter_chars(dn)}))")

    def _attributes(self) -> list[str]:
        """What a search for a person reads. The entry's permanent id only where the directory's schema has it (asked
        for by a name the schema lacks, the whole search fails: Active Directory has no entryUUID); without it the
        account is bound to the entry's DN."""
        s = self.settings
        wanted = [s.user_attribute, s.display_name_attribute, s.email_attribute]
        schema = self.server.schema
        if schema is None or s.entry_id_attribute in schema.attribute_types:
            wanted.append(s.entry_id_attribute)
        return wanted

    def _directory_user(self, conn: Connection, entry: object, typed: str) -> DirectoryUser:
        """The person as the directory describes them, with their groups (read with ``conn``)."""
        s = self.settings
        dn = entry.entry_dn  # type: ignore[attr-defined]
        groups: set[str] = set()
        if s.group_base:
            if not conn.search(s.group_base, self.group_filter(dn), SUBTREE, attributes=["cn"]) \
                    and conn.result.get("result") != 0:  # a failed group search is not "in no group"
                raise DirectoryUnavailable(f"group search failed: {conn.result.get('description')}")
            groups = {str(g.cn.value) for g in conn.entries}
        attrs = entry.entry_attributes_as_dict  # type: ignore[attr-defined]
        display = (attrs.get(s.display_name_attribute) or [typed])[0]
        email = (attrs.get(s.email_attribute) or [None])[0]
        uid = (attrs.get(s.user_attribute) or [typed])[0]
        entry_id = (attrs.get(s.entry_id_attribute) or [None])[0]
        return DirectoryUser(dn=dn, username=str(uid).lower(), display_name=str(display), email=email,
                             groups=frozenset(groups), entry_id=str(entry_id) if entry_id else f"dn:{dn}")

    def authenticate(self, username: str, password: str) -> DirectoryUser | None:
        """The directory's view of the user when the password is right, else None."""
        if not username or not password:
            return None  # an empty password would be an anonymous bind that "succeeds"
        s = self.settings
        try:
            with self._service_connection() as conn:
                conn.search(s.user_base, self.user_filter(username), SUBTREE, attributes=self._attributes())
                if len(conn.entries) != 1:
                    return None
                entry = conn.entries[0]
                dn = entry.entry_dn
                try:
                    user_conn = Connection(self.server, user=dn, password=password, read_only=True,
                                           receive_timeout=max(1, int(s.connect_timeout)))
                    if not user_conn.bind():
                        return None
                    user_conn.unbind()
                except LDAPBindError:
                    return None
                return self._directory_user(conn, entry, username)
        except LDAPException as exc:
            raise DirectoryUnavailable(str(exc)) from exc

    def look_up(self, usernames: list[str]) -> dict[str, DirectoryUser | None]:
        """Each username's entry as the directory holds it now (None: no entry has it), over one service connection,
        without a password: the worker's reading of the directory. A username two entries share is left out (the
        directory is inconsistent; nothing is decided on it). Raises DirectoryUnavailable rather than answer for
        part of them: an unreachable directory must never read as everybody gone."""
        s = self.settings
        found: dict[str, DirectoryUser | None] = {}
        try:
            with self._service_connection() as conn:
                for username in usernames:
                    if not conn.search(s.user_base, self.user_filter(username), SUBTREE,
                                       attributes=self._attributes()) and conn.result.get("result") != 0:
                        # 32 (no such object) is the base itself missing, not the person: never "gone"
                        raise DirectoryUnavailable(f"search failed: {conn.result.get('description')}")
                    entries = list(conn.entries)
                    if not entries:
                        found[username] = None
                    elif len(entries) == 1:
                        found[username] = self._directory_user(conn, entries[0], username)
        except LDAPException as exc:
            raise DirectoryUnavailable(str(exc)) from exc
        return found

    def roles_for(self, user: DirectoryUser) -> set[str]:
        roles: set[str] = set()
        for group in user.groups:
            roles.update(self.settings.group_roles.get(group, []))
        return roles
