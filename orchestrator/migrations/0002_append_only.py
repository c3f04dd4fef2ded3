"""Events and audit rows are append-only: PostgreSQL refuses UPDATE and DELETE of them."""

from django.db import migrations

TABLES = ("orchestrator_event", "orchestrator_auditlog")

FUNCTION = """
CREATE OR REPLACE FUNCTION orchestrator_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME USING ERRCODE = 'check_violation';
END $$ LANGUAGE plpgsql;
"""


def forwards(apps, schema_editor):  # type: ignore[no-untyped-def]
    if schema_editor.connection.vendor != "postgresql":
        return  # SQLite (embedded mode) has no such guard; PostgreSQL is the system of record
    schema_editor.execute(FUNCTION, params=None)
    for table in TABLES:
        schema_editor.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION orchestrator_append_only();"
        )


def backwards(apps, schema_editor):  # type: ignore[no-untyped-def]
    if schema_editor.connection.vendor != "postgresql":
        return
    for table in TABLES:
        schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table};")
    schema_editor.execute("DROP FUNCTION IF EXISTS orchestrator_append_only();")


class Migration(migrations.Migration):
    dependencies = [("orchestrator", "0001_initial")]

    operations = [migrations.RunPython(forwards, backwards)]
