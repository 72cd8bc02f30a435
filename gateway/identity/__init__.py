"""Safe people, part one: who someone is (local accounts, LDAP, second factor, API tokens)."""
