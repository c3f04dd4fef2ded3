"""PostgreSQL: each event row records the id of the transaction that wrote it (`txid`).

Event ids come from a sequence in INSERT order, and transactions commit in another order, so
"every event with an id above N" can still grow below an id already read. Readers of the
outbox in commit-safe order (SSE, the event log's `after`) sort by (txid, id) and read only
events whose transaction is older than every running one (`pg_snapshot_xmin`): that set
never grows behind them. The column is filled by its DEFAULT and is not a model field (rows
written before it read 0 and sort first). SQLite (the embedded mode) serializes writers,
so there id order is commit order and the column is not needed.
"""

from django.db import migrations


def forwards(apps, schema_editor):  # type: ignore[no-untyped-def]
    if schema_editor.connection.vendor != "postgresql":
        return
    # A constant default first: existing rows read 0 without the table being rewritten.
    schema_editor.execute("ALTER TABLE orchestrator_event ADD COLUMN txid bigint NOT NULL DEFAULT 0")
    schema_editor.execute(
        "ALTER TABLE orchestrator_event "
        "ALTER COLUMN txid SET DEFAULT (pg_current_xact_id()::text::bigint)"
    )
    schema_editor.execute(
        "CREATE INDEX orchestrator_event_txid_idx ON orchestrator_event (txid, id)"
    )
    schema_editor.execute(
        "CREATE INDEX orchestrator_event_mkt_txid_idx "
        "ON orchestrator_event (marketplace_id, txid, id)"
    )


def backwards(apps, schema_editor):  # type: ignore[no-untyped-def]
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("ALTER TABLE orchestrator_event DROP COLUMN txid")


class Migration(migrations.Migration):
    dependencies = [("orchestrator", "0002_append_only")]

    operations = [migrations.RunPython(forwards, backwards)]
