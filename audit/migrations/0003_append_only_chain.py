"""The database itself keeps the trail append-only and chains it.

PostgreSQL:
- BEFORE INSERT: a new row arrives unsealed whatever the writer sent (no forged place in the chain);
- a deferred constraint trigger seals it at commit: locks the one-row chain head (FOR UPDATE, so concurrent
  writers queue and the chain stays linear), sets seq = head + 1, prev_hash = head's hash and
  hash = sha256("<prev_hash>:<seq>:<content_hash>"), the formula of audit.chain.link_hash;
- BEFORE UPDATE OR DELETE: refused, except that one sealing update from inside the sealing trigger.
TRUNCATE is not refused: Django's test flush empties every table with it; audit_verify still notices a
truncated trail as long as the chain head is left (its seq and hash no longer match the last event).

SQLite (the embedded default): UPDATE and DELETE abort; the writer seals the row itself (audit.services).
"""

from __future__ import annotations

from django.db import migrations

CONTENT = (
    "id, at, action, actor_id, actor_username, mailbox_id, mailbox_address, message_id, message_subject, "
    "details, content_hash"
)

POSTGRESQL = [
    """
    CREATE FUNCTION audit_event_unsealed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        NEW.seq := NULL;
        NEW.prev_hash := '';
        NEW.hash := '';
        RETURN NEW;
    END $$;
    """,
    "CREATE TRIGGER audit_event_unsealed BEFORE INSERT ON audit_auditevent "
    "FOR EACH ROW EXECUTE FUNCTION audit_event_unsealed();",
    """
    CREATE FUNCTION audit_event_seal() RETURNS trigger LANGUAGE plpgsql AS $$
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
    """,
    "CREATE CONSTRAINT TRIGGER audit_event_seal AFTER INSERT ON audit_auditevent "
    "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION audit_event_seal();",
    f"""
    CREATE FUNCTION audit_event_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        -- The sealing trigger's own update (trigger depth 2): an unsealed row gets its place, nothing else changes.
        IF TG_OP = 'UPDATE' AND pg_trigger_depth() > 1 AND OLD.seq IS NULL AND NEW.seq IS NOT NULL
           AND ROW({", ".join("NEW." + c.strip() for c in CONTENT.split(","))})
               IS NOT DISTINCT FROM ROW({", ".join("OLD." + c.strip() for c in CONTENT.split(","))}) THEN
            RETURN NEW;
        END IF;
        RAISE EXCEPTION 'audit events are append-only: % refused', TG_OP USING ERRCODE = 'integrity_constraint_violation';
    END $$;
    """,
    "CREATE TRIGGER audit_event_append_only BEFORE UPDATE OR DELETE ON audit_auditevent "
    "FOR EACH ROW EXECUTE FUNCTION audit_event_append_only();",
]
POSTGRESQL_REVERSE = [
    "DROP TRIGGER audit_event_append_only ON audit_auditevent;",
    "DROP FUNCTION audit_event_append_only();",
    "DROP TRIGGER audit_event_seal ON audit_auditevent;",
    "DROP FUNCTION audit_event_seal();",
    "DROP TRIGGER audit_event_unsealed ON audit_auditevent;",
    "DROP FUNCTION audit_event_unsealed();",
]

SQLITE = [
    "CREATE TRIGGER audit_event_no_update BEFORE UPDATE ON audit_auditevent "
    "BEGIN SELECT RAISE(ABORT, 'audit events are append-only: UPDATE refused'); END;",
    "CREATE TRIGGER audit_event_no_delete BEFORE DELETE ON audit_auditevent "
    "BEGIN SELECT RAISE(ABORT, 'audit events are append-only: DELETE refused'); END;",
]
SQLITE_REVERSE = ["DROP TRIGGER audit_event_no_update;", "DROP TRIGGER audit_event_no_delete;"]


def _run(statements: dict[str, list[str]]):
    def run(apps, schema_editor) -> None:
        for statement in statements.get(schema_editor.connection.vendor, []):
            schema_editor.execute(statement, params=None)  # no placeholders: the bodies contain %

    return run


class Migration(migrations.Migration):
    dependencies = [("audit", "0002_copy_mailbox_events")]

    operations = [
        migrations.RunPython(
            _run({"postgresql": POSTGRESQL, "sqlite": SQLITE}),
            _run({"postgresql": POSTGRESQL_REVERSE, "sqlite": SQLITE_REVERSE}),
        )
    ]
