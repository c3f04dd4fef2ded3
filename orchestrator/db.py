"""A lean INSERT for rows written on every money movement (journal entries, outbox events).

Model.save() costs several times the statement itself in Python; these rows are written
once and never updated, so they need none of its machinery (signals, update-or-insert).
"""

from typing import Any

from django.db import connection
from django.db.models import Field, Model


def insert_row(instance: Model, *, unless_exists: tuple[str, ...] = ()) -> int | None:
    """INSERT `instance` (every concrete field but the auto primary key); sets and returns its pk.

    With `unless_exists` (the columns of a unique constraint) an existing row with the same
    values is left alone and None is returned; a concurrent insert of the same values is
    waited for, then treated the same way. SQL valid on PostgreSQL and SQLite.
    """
    meta = instance._meta
    fields: list[Field[Any, Any]] = [f for f in meta.concrete_fields if f is not meta.auto_field]
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    params = [f.get_db_prep_save(getattr(instance, f.attname), connection) for f in fields]
    marks = ", ".join(["%s"] * len(fields))
    conflict = ""
    if unless_exists:
        conflict = f" ON CONFLICT ({', '.join(unless_exists)}) DO NOTHING"
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {connection.ops.quote_name(meta.db_table)} ({columns}) "  # noqa: S608 - names from the model
            f"VALUES ({marks}){conflict} RETURNING {connection.ops.quote_name(meta.pk.column)}",
            params,
        )
        row = cursor.fetchone()
    if row is None:
        return None
    instance.pk = row[0]
    instance._state.adding = False
    instance._state.db = connection.alias
    return int(row[0])
