"""The sealing trigger seals all of a transaction's events at its first firing, in insertion order, and moves
the chain head once.

Sealing row by row moved the head once per event: a transaction recording thousands of events (a bulk change,
an import) left that many versions of the one head row behind in itself, each lookup walking them all —
quadratic. Now every event row is updated exactly once and the head once per transaction; the later firings
of the same commit find their row sealed and return. The chain, the formula and the lock are unchanged.

Which rows are this transaction's: the insert trigger marks each new row's hash "pending:<transaction id>"
(the top-level id, savepoints included), and only rows with this transaction's mark are sealed. A row written
unsealed past the triggers is never taken into the chain by the next writer; audit_verify names it.
"""

from __future__ import annotations

from django.db import migrations

MARK_PENDING = """
CREATE OR REPLACE FUNCTION audit_event_unsealed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.seq := NULL;
    NEW.prev_hash := '';
    NEW.hash := 'pending:' || txid_current()::text;
    RETURN NEW;
END $$;
"""

MARK_NOTHING = """
CREATE OR REPLACE FUNCTION audit_event_unsealed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.seq := NULL;
    NEW.prev_hash := '';
    NEW.hash := '';
    RETURN NEW;
END $$;
"""

SEAL_ALL = """
CREATE OR REPLACE FUNCTION audit_event_seal() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    head_seq bigint;
    head_hash text;
    prev text;
    pending record;
BEGIN
    IF (SELECT seq FROM audit_auditevent WHERE id = NEW.id) IS NOT NULL THEN
        RETURN NULL;  -- sealed by this commit's first firing
    END IF;
    INSERT INTO audit_chainhead (id, seq, hash) VALUES (1, 0, repeat('0', 64)) ON CONFLICT (id) DO NOTHING;
    SELECT seq, hash INTO head_seq, head_hash FROM audit_chainhead WHERE id = 1 FOR UPDATE;
    FOR pending IN
        SELECT id, content_hash FROM audit_auditevent
        WHERE seq IS NULL AND hash = 'pending:' || txid_current()::text ORDER BY id
    LOOP
        prev := head_hash;
        head_seq := head_seq + 1;
        head_hash := encode(sha256(convert_to(prev || ':' || head_seq::text || ':' || pending.content_hash,
                                              'UTF8')), 'hex');
        UPDATE audit_auditevent SET seq = head_seq, prev_hash = prev, hash = head_hash WHERE id = pending.id;
    END LOOP;
    UPDATE audit_chainhead SET seq = head_seq, hash = head_hash WHERE id = 1;
    RETURN NULL;
END $$;
"""

SEAL_EACH = """
CREATE OR REPLACE FUNCTION audit_event_seal() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    head_seq bigint;
    head_hash text;
    link text;
BEGIN
    INSERT INTO audit_chainhead (id, seq, hash) VALUES (1, 0, repeat('0', 64)) ON CONFLICT (id) DO NOTHING;
    SELECT seq, hash INTO head_seq, head_hash FROM audit_chainhead WHERE id = 1 FOR UPDATE;
    link := encode(sha256(convert_to(head_hash || ':' || (head_seq + 1)::text || ':' || NEW.content_hash,
                                     'UTF8')), 'hex');
    UPDATE audit_auditevent SET seq = head_seq + 1, prev_hash = head_hash, hash = link WHERE id = NEW.id;
    UPDATE audit_chainhead SET seq = head_seq + 1, hash = link WHERE id = 1;
    RETURN NULL;
END $$;
"""


def _run(*statements: str):
    def run(apps, schema_editor) -> None:
        if schema_editor.connection.vendor == "postgresql":
            for sql in statements:
                schema_editor.execute(sql, params=None)  # no placeholders

    return run


class Migration(migrations.Migration):
    dependencies = [("audit", "0003_append_only_chain")]

    operations = [migrations.RunPython(_run(MARK_PENDING, SEAL_ALL), _run(SEAL_EACH, MARK_NOTHING))]
