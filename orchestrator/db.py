"""A lean INSERT for rows written on every money movement (journal entries, outbox events).

Model.save() costs several times the statement itself in Python; these rows are written
once and never updated, so they need none of its machinery (signals, update-or-insert).
"""

import functools
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.models import Field, Model


@functools.cache
def _insert_sql(
    model: type[Model], unless_exists: tuple[str, ...]
) -> tuple[list[Field[Any, Any]], str]:
    meta = model._meta
    fields: list[Field[Any, Any]] = [f for f in meta.concrete_fields if f is not meta.auto_field]
    quote = connection.ops.quote_name
    conflict = f" ON CONFLICT ({', '.join(unless_exists)}) DO NOTHING" if unless_exists else ""
    sql = (
        f"INSERT INTO {quote(meta.db_table)} ({', '.join(quote(f.column) for f in fields)}) "  # noqa: S608 - names from the model
        f"VALUES ({', '.join(['%s'] * len(fields))}){conflict} RETURNING {quote(meta.pk.column)}"
    )
    return fields, sql


def insert_row(instance: Model, *, unless_exists: tuple[str, ...] = ()) -> int | None:
    """INSERT `instance` (every concrete field but the auto primary key); sets and returns its pk.

    With `unless_exists` (the columns of a unique constraint) an existing row with the same
    values is left alone and None is returned; a concurrent insert of the same values is
    waited for, then treated the same way. SQL valid on PostgreSQL and SQLite.
    """
    db = connections[DEFAULT_DB_ALIAS]  # one lookup; each `connection.x` costs a thread-local one
    fields, sql = _insert_sql(type(instance), unless_exists)
    params = [f.get_db_prep_save(getattr(instance, f.attname), db) for f in fields]
    with db.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return None
    instance.pk = row[0]
    instance._state.adding = False
    instance._state.db = db.alias
    return int(row[0])
