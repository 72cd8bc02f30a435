"""The order in which `sde db copy` writes tables: every foreign key is satisfied, cycles are split or refused."""

from __future__ import annotations

import pytest
from sqlalchemy import Column, ForeignKey, Integer, MetaData, Table

from gateway.db_copy import AUDIT_HEAD, INVOICE_LINES, CopyError, plan
from gateway.model_registry import metadata


def test_every_table_is_copied_once_and_every_parent_comes_first() -> None:
    steps = plan()
    described = [s.describe() for s in steps]
    tables = {s.table.name for s in steps}
    assert tables | {AUDIT_HEAD, INVOICE_LINES} == set(metadata.tables)  # the head is updated, lines go with invoices
    assert len(described) == len(set(described))
    position = {s.describe(): i for i, s in enumerate(steps)}
    split = {s.table.name for s in steps if s.part != "all"}
    assert split == {"applications"}
    for table in metadata.sorted_tables:
        if table.name in split or table.name in (AUDIT_HEAD, INVOICE_LINES):
            continue
        for fk in table.foreign_keys:
            parent = fk.column.table.name
            if parent in (table.name, AUDIT_HEAD) or parent in split:
                continue
            assert position[parent] < position[table.name], f"{table.name} before its parent {parent}"


def test_the_project_application_cycle_is_split_on_the_nullable_side() -> None:
    order = [s.describe() for s in plan()]
    first, second = "applications (project_id empty)", "applications (project_id set)"
    assert order.index(first) < order.index("projects") < order.index(second)
    for child in ("application_members", "application_variables", "decisions", "review_assignments", "quotes"):
        assert order.index(second) < order.index(child)


def _tables(nullable: bool) -> list[Table]:
    md = MetaData()
    a = Table("a", md, Column("id", Integer, primary_key=True),
              Column("b_id", Integer, ForeignKey("b.id", use_alter=True), nullable=nullable))
    b = Table("b", md, Column("id", Integer, primary_key=True), Column("a_id", Integer, ForeignKey("a.id"),
                                                                       nullable=False))
    c = Table("c", md, Column("id", Integer, primary_key=True), Column("a_id", Integer, ForeignKey("a.id")),
              Column("parent_id", Integer, ForeignKey("c.id"), nullable=True))
    return [a, b, c]


def test_a_cycle_with_a_nullable_column_is_split_and_self_references_are_not() -> None:
    order = [s.describe() for s in plan(_tables(nullable=True))]
    assert order == ["a (b_id empty)", "b", "a (b_id set)", "c"]


def test_a_cycle_no_nullable_column_breaks_is_refused() -> None:
    with pytest.raises(CopyError, match="form a cycle"):
        plan(_tables(nullable=False))
