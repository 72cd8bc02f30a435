"""former project members: who was taken off a project's team, kept so an output checker never checks a project
they were on

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-04

The people removed before this migration are recovered from the audit log: each project's ``project.created``
event names its first team (usernames) and each ``project.amended`` event the team the amendment left (user ids);
whoever is missing from the next team left it at that event's time.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from alembic import op

import gateway.db

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    former = op.create_table(
        "project_former_members",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("joined_at", gateway.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("left_at", gateway.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"],
                                name=op.f("fk_project_former_members_project_id_projects")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_project_former_members_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_project_former_members")),
    )
    with op.batch_alter_table("project_former_members", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_project_former_members_project_id"), ["project_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_project_former_members_user_id"), ["user_id"], unique=False)
    rows = _recovered(op.get_bind())
    if rows:
        op.bulk_insert(former, rows)


def _recovered(conn: sa.Connection) -> list[dict[str, Any]]:
    """Who left each project's team, and when, as the audit log tells it (oldest event first)."""
    events = sa.table("audit_events", sa.column("seq", sa.Integer()), sa.column("action", sa.String()),
                      sa.column("object_type", sa.String()), sa.column("object_id", sa.String()),
                      sa.column("occurred_at", gateway.db.UTCDateTime(timezone=True)), sa.column("details", sa.JSON()))
    users = sa.table("users", sa.column("id", sa.Integer()), sa.column("username", sa.String()))
    projects = sa.table("projects", sa.column("id", sa.Integer()))
    ids = {name: uid for uid, name in conn.execute(sa.select(users.c.id, users.c.username))}
    known_users, known_projects = set(ids.values()), set(conn.scalars(sa.select(projects.c.id)))

    def user_id(named: object) -> int | None:
        text = str(named)
        found = int(text) if text.isdigit() else ids.get(text)  # amended names ids, created names usernames
        return found if found in known_users else None

    teams: dict[int, dict[int, dt.datetime]] = {}  # project -> member -> when they joined
    rows: list[dict[str, Any]] = []
    for object_id, at, details in conn.execute(
            sa.select(events.c.object_id, events.c.occurred_at, events.c.details)
            .where(events.c.object_type == "project", events.c.action.in_(["project.created", "project.amended"]))
            .order_by(events.c.seq)):
        if not str(object_id).isdigit() or int(object_id) not in known_projects:
            continue
        project_id, team, details = int(object_id), teams.setdefault(int(object_id), {}), details or {}
        named = {uid for uid in map(user_id, details.get("members", [])) if uid is not None}
        reason = ("removed from the project team by amendment " + str(details.get("amendment", ""))).strip()
        for uid in sorted(set(team) - named):
            rows.append({"project_id": project_id, "user_id": uid, "joined_at": team.pop(uid), "left_at": at,
                         "reason": reason + " (recovered from the audit log)"})
        for uid in named - set(team):
            team[uid] = at
    return rows


def downgrade() -> None:
    with op.batch_alter_table("project_former_members", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_project_former_members_user_id"))
        batch_op.drop_index(batch_op.f("ix_project_former_members_project_id"))
    op.drop_table("project_former_members")
