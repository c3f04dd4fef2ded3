"""Outbound deliveries written by the database, in the statement that inserts the event.

The `domain_event` receiver that wrote them (deliveries_record) cost every change a
transaction and an endpoint SELECT, even a ledger entry that is otherwise one statement
(ledger_post_entry). On PostgreSQL this AFTER INSERT trigger on the outbox writes one
delivery per enabled endpoint of the event's marketplace whose patterns select the event
type, in the same statement, so the event and its deliveries still commit together. The
patterns follow orchestrator.catalog.type_matches: an empty list or "*" selects everything,
"order.*" a prefix, anything else one type.

Rows start unclaimed (`locked_until` NULL): after commit the web process queues a kick
(webhooks.dispatch) and the sweeper claims whatever it missed. SQLite keeps the receiver.
"""

from django.db import migrations

PUBLIC_ID = """
CREATE OR REPLACE FUNCTION offerhub_public_id(p_prefix text) RETURNS text
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    -- orchestrator.ids: 24 base-62 digits of random bits, the same alphabet.
    v_alphabet constant text :=
        'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';
    v_bytes bytea := uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid());
    v_value numeric := 0;
    v_out text := '';
BEGIN
    FOR i IN 0..17 LOOP
        v_value := v_value * 256 + get_byte(v_bytes, i);
    END LOOP;
    FOR i IN 1..24 LOOP
        v_out := v_out || substr(v_alphabet, (mod(v_value, 62))::int + 1, 1);
        v_value := div(v_value, 62);
    END LOOP;
    RETURN p_prefix || v_out;
END $$;
"""

TRIGGER = """
CREATE OR REPLACE FUNCTION webhooks_event_deliveries() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhooks_webhookdelivery (
        public_id, endpoint_id, event_id, event_type, status, attempt_count,
        next_attempt_at, locked_until, claim_token, last_status_code, last_error,
        created_at, first_attempt_at, delivered_at
    )
    -- The event's own time (the application's clock, which wrote it), not the database's:
    -- the dispatcher compares next_attempt_at with the application's clock.
    SELECT offerhub_public_id('dlv_'), e.id, NEW.id, NEW.type, 'pending', 0,
           NEW.created_at, NULL, '', NULL, '', NEW.created_at, NULL, NULL
      FROM webhooks_webhookendpoint e
     WHERE e.marketplace_id = NEW.marketplace_id
       AND e.is_enabled
       AND e.deleted_at IS NULL
       AND jsonb_typeof(e.event_types) = 'array'  -- never fail the change for a bad row
       AND (
           jsonb_array_length(e.event_types) = 0
           OR e.event_types ? '*'
           OR e.event_types ? NEW.type
           OR EXISTS (
               SELECT 1 FROM jsonb_array_elements_text(e.event_types) AS p(pattern)
                WHERE p.pattern LIKE '%.*'
                  AND starts_with(NEW.type, left(p.pattern, -1))
           )
       );
    RETURN NULL;
END $$;

CREATE TRIGGER webhooks_event_deliveries
AFTER INSERT ON orchestrator_event
FOR EACH ROW WHEN (NEW.marketplace_id IS NOT NULL)
EXECUTE FUNCTION webhooks_event_deliveries();
"""

DROP = """
DROP TRIGGER IF EXISTS webhooks_event_deliveries ON orchestrator_event;
DROP FUNCTION IF EXISTS webhooks_event_deliveries();
DROP FUNCTION IF EXISTS offerhub_public_id(text);
"""


def forwards(apps, schema_editor):  # type: ignore[no-untyped-def]
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(PUBLIC_ID, params=None)
        schema_editor.execute(TRIGGER, params=None)


def backwards(apps, schema_editor):  # type: ignore[no-untyped-def]
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP, params=None)


class Migration(migrations.Migration):
    dependencies = [("webhooks", "0002_outbound"), ("orchestrator", "0003_event_txid")]

    operations = [migrations.RunPython(forwards, backwards)]
