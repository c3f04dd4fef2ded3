"""PostgreSQL guards for the ledger's invariants (see ledger/models.py).

SQLite (the embedded first-run mode) gets none of them; PostgreSQL is the system of record.
"""

from django.db import migrations

BALANCED = """
-- Per posting: its entry's postings sum to zero in each currency (one posting alone cannot).
CREATE OR REPLACE FUNCTION ledger_posting_balances() RETURNS trigger AS $$
BEGIN
    IF EXISTS (
        SELECT 1 FROM ledger_posting WHERE entry_id = NEW.entry_id
        GROUP BY currency HAVING sum(amount) <> 0
    ) THEN
        RAISE EXCEPTION 'ledger entry % does not balance', NEW.entry_id
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$ LANGUAGE plpgsql;

-- Per entry: at least two postings, each in its account's currency.
CREATE OR REPLACE FUNCTION ledger_entry_well_formed() RETURNS trigger AS $$
BEGIN
    IF (SELECT count(*) FROM ledger_posting WHERE entry_id = NEW.id) < 2 THEN
        RAISE EXCEPTION 'ledger entry % has fewer than 2 postings', NEW.id
            USING ERRCODE = 'check_violation';
    END IF;
    IF EXISTS (
        SELECT 1 FROM ledger_posting p JOIN ledger_account a ON a.id = p.account_id
        WHERE p.entry_id = NEW.id AND a.currency <> p.currency
    ) THEN
        RAISE EXCEPTION 'ledger entry % posts to an account of another currency', NEW.id
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$ LANGUAGE plpgsql;

-- Deferred: checked at COMMIT, once every posting of the entry is in.
CREATE CONSTRAINT TRIGGER ledger_posting_balances
    AFTER INSERT ON ledger_posting DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION ledger_posting_balances();
CREATE CONSTRAINT TRIGGER ledger_entry_well_formed
    AFTER INSERT ON ledger_journalentry DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION ledger_entry_well_formed();
"""

APPEND_ONLY = """
CREATE OR REPLACE FUNCTION ledger_refuse_change() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION '% rows are append-only', TG_TABLE_NAME USING ERRCODE = 'check_violation';
END $$ LANGUAGE plpgsql;

CREATE TRIGGER ledger_posting_append_only
    BEFORE UPDATE OR DELETE ON ledger_posting
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_entry_no_delete
    BEFORE DELETE ON ledger_journalentry
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();

-- An entry may be written once more, to seal it; nothing else about it ever changes.
CREATE OR REPLACE FUNCTION ledger_entry_seal_only() RETURNS trigger AS $$
BEGIN
    IF OLD.hash <> ''
       OR NEW.id <> OLD.id OR NEW.public_id <> OLD.public_id
       OR NEW.marketplace_id <> OLD.marketplace_id OR NEW.reference <> OLD.reference
       OR NEW.kind <> OLD.kind OR NEW.memo <> OLD.memo OR NEW.metadata <> OLD.metadata
       OR NEW.created_at <> OLD.created_at THEN
        RAISE EXCEPTION 'ledger entry % is immutable', OLD.public_id
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$ LANGUAGE plpgsql;

CREATE TRIGGER ledger_entry_seal_only
    BEFORE UPDATE ON ledger_journalentry
    FOR EACH ROW EXECUTE FUNCTION ledger_entry_seal_only();
"""

DROP = """
DROP TRIGGER IF EXISTS ledger_posting_balances ON ledger_posting;
DROP TRIGGER IF EXISTS ledger_entry_well_formed ON ledger_journalentry;
DROP TRIGGER IF EXISTS ledger_posting_append_only ON ledger_posting;
DROP TRIGGER IF EXISTS ledger_entry_no_delete ON ledger_journalentry;
DROP TRIGGER IF EXISTS ledger_entry_seal_only ON ledger_journalentry;
DROP FUNCTION IF EXISTS ledger_posting_balances();
DROP FUNCTION IF EXISTS ledger_entry_well_formed();
DROP FUNCTION IF EXISTS ledger_refuse_change();
DROP FUNCTION IF EXISTS ledger_entry_seal_only();
"""


def forwards(apps, schema_editor):  # type: ignore[no-untyped-def]
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(BALANCED, params=None)
        schema_editor.execute(APPEND_ONLY, params=None)


def backwards(apps, schema_editor):  # type: ignore[no-untyped-def]
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP, params=None)


class Migration(migrations.Migration):
    dependencies = [("ledger", "0001_initial")]

    operations = [migrations.RunPython(forwards, backwards)]
