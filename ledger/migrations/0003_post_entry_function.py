"""ledger_post_entry(): the whole posting of one entry as one statement (PostgreSQL).

entry_post used to send five statements per entry (lock, entry, postings, balances, outbox
event), each a network round trip plus driver and Django work on a busy machine. This
function runs the same statements, in the same order and under the same locks, on the
server, so a transfer costs the client one statement. It changes no table and no trigger:
the deferred balance and well-formedness triggers still check every entry at COMMIT.

Outcomes (column `status`):
- 'posted': entry_id, event_id are the new rows;
- 'exists': the reference was posted before (by an earlier or a concurrent call); nothing
  was written, the caller compares the postings;
- 'short':  short_account (first in leg order) would go below zero: short_balance is its
  balance under the lock; nothing was written and no error is raised, so a caller's own
  transaction stays usable.
"""

from django.db import migrations

POST_ENTRY = """
CREATE OR REPLACE FUNCTION ledger_post_entry(
    p_marketplace_id bigint, p_public_id text, p_reference text, p_kind text, p_memo text,
    p_metadata jsonb, p_created_at timestamptz,
    p_accounts bigint[], p_amounts numeric[], p_currencies text[],
    p_event_public_id text, p_event_type text, p_event_aggregate_type text,
    p_event_aggregate_id text, p_event_user_ids jsonb, p_event_payload jsonb,
    p_event_request_id text, p_event_created_at timestamptz,
    OUT status text, OUT entry_id bigint, OUT event_id bigint,
    OUT short_account bigint, OUT short_balance numeric
) LANGUAGE plpgsql
-- VOLATILE (the default, stated because the funds check relies on it): every statement
-- takes a new snapshot, so a statement after the lock sees what the lock holders committed.
VOLATILE
-- Plan each statement once per session. With custom plans (the default) PostgreSQL planned
-- them anew on every call, because a plan for the actual arrays looks cheaper than one for
-- arrays of unknown length; that planning was most of the function's time.
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_locked bigint[];
    v_account bigint;
    v_delta numeric;
    v_shard bigint;
BEGIN
    -- Bounded accounts, locked in ascending id order: entries over the same accounts queue
    -- instead of deadlocking. Unbounded (system) accounts are never locked.
    SELECT coalesce(array_agg(id), '{}') INTO v_locked FROM (
        SELECT id FROM ledger_account
        WHERE id = ANY(p_accounts) AND NOT allow_negative
        ORDER BY id FOR UPDATE
    ) AS locked;

    -- The funds check, under the lock: in READ COMMITTED each statement of a function
    -- takes a new snapshot, so this one reads the balances as the lock holders left them.
    SELECT d.account_id, a.balance INTO short_account, short_balance
    FROM (
        SELECT account_id, sum(amount) AS delta, min(n) AS first_leg
        FROM unnest(p_accounts, p_amounts) WITH ORDINALITY AS leg(account_id, amount, n)
        GROUP BY account_id
    ) AS d
    JOIN ledger_account AS a ON a.id = d.account_id
    WHERE a.id = ANY(v_locked) AND a.balance + d.delta < 0
    ORDER BY d.first_leg
    LIMIT 1;
    IF short_account IS NOT NULL THEN
        -- A retry of an entry that went through is not an overdraft, though money moved on.
        status := CASE WHEN EXISTS (
            SELECT 1 FROM ledger_journalentry
            WHERE marketplace_id = p_marketplace_id AND reference = p_reference
        ) THEN 'exists' ELSE 'short' END;
        RETURN;
    END IF;

    -- ON CONFLICT waits for a concurrent insert of the same reference, then yields no row.
    INSERT INTO ledger_journalentry
        (public_id, marketplace_id, reference, kind, memo, metadata, created_at,
         sequence, prev_hash, hash)
    VALUES
        (p_public_id, p_marketplace_id, p_reference, p_kind, p_memo, p_metadata, p_created_at,
         NULL, '', '')
    ON CONFLICT (marketplace_id, reference) DO NOTHING
    RETURNING id INTO entry_id;
    IF entry_id IS NULL THEN
        status := 'exists';
        RETURN;
    END IF;

    INSERT INTO ledger_posting (entry_id, account_id, amount, currency)
    SELECT entry_id, leg.account_id, leg.amount, leg.currency
    FROM unnest(p_accounts, p_amounts, p_currencies) AS leg(account_id, amount, currency);

    UPDATE ledger_account AS a SET balance = a.balance + d.delta
    FROM (
        SELECT account_id, sum(amount) AS delta
        FROM unnest(p_accounts, p_amounts) AS leg(account_id, amount)
        GROUP BY account_id
    ) AS d
    WHERE a.id = d.account_id AND a.id = ANY(v_locked) AND d.delta <> 0;

    -- System accounts, in ascending id order: an atomic increment of one shard row that no
    -- concurrent entry holds (SKIP LOCKED), picked at random, so a busy clearing or fee
    -- account is never a queue. Only when every shard is held does this wait, for one.
    IF NOT p_accounts <@ v_locked THEN  -- a transfer between users has none: no query
        FOR v_account, v_delta IN
            SELECT account_id, sum(amount)
            FROM unnest(p_accounts, p_amounts) AS leg(account_id, amount)
            WHERE NOT account_id = ANY(v_locked)
            GROUP BY account_id
            HAVING sum(amount) <> 0
            ORDER BY account_id
        LOOP
            SELECT id INTO v_shard FROM ledger_accountshard WHERE account_id = v_account
            ORDER BY random() LIMIT 1 FOR UPDATE SKIP LOCKED;
            IF v_shard IS NULL THEN
                SELECT id INTO v_shard FROM ledger_accountshard WHERE account_id = v_account
                ORDER BY random() LIMIT 1 FOR UPDATE;
            END IF;
            IF v_shard IS NULL THEN
                RAISE EXCEPTION 'ledger account % has no balance shards', v_account
                    USING ERRCODE = 'check_violation';
            END IF;
            UPDATE ledger_accountshard SET balance = balance + v_delta WHERE id = v_shard;
        END LOOP;
    END IF;

    -- The outbox event, in the same transaction as the money it reports.
    INSERT INTO orchestrator_event
        (public_id, marketplace_id, type, aggregate_type, aggregate_id, user_ids, payload,
         request_id, created_at)
    VALUES
        (p_event_public_id, p_marketplace_id, p_event_type, p_event_aggregate_type,
         p_event_aggregate_id, p_event_user_ids, p_event_payload, p_event_request_id,
         p_event_created_at)
    RETURNING id INTO event_id;
    status := 'posted';
END $$;
"""

DROP = """
DROP FUNCTION IF EXISTS ledger_post_entry(
    bigint, text, text, text, text, jsonb, timestamptz, bigint[], numeric[], text[],
    text, text, text, text, jsonb, jsonb, text, timestamptz
);
"""


def forwards(apps, schema_editor):  # type: ignore[no-untyped-def]
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(POST_ENTRY, params=None)


def backwards(apps, schema_editor):  # type: ignore[no-untyped-def]
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP, params=None)


class Migration(migrations.Migration):
    dependencies = [("ledger", "0002_invariants"), ("orchestrator", "0002_append_only")]

    operations = [migrations.RunPython(forwards, backwards)]
