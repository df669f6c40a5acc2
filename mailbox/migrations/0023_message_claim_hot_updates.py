# The read-lock is taken, renewed and released on every message page: make those PostgreSQL HOT updates
# (the new row version on the same page, no index entries). Under load each of them was a full update: a new
# entry in every index of mailbox_message (the GIN full-text index among them, whose pending list autovacuum
# then merges) and the stored generated search column computed again from the whole body.
# - The index on claimed_by goes: a lock is looked up by message, never by holder alone (releasing all of a
#   person's locks, which is rare, filters by mailbox or reads the table).
# - search_tsv stays a stored tsvector with its GIN index, but is written by a trigger only when the subject,
#   the sender or the body change (on PostgreSQL a generated column is computed again on every update).
# - fillfactor 90: new pages keep room for HOT versions.
# SQLite (the embedded demo) has no search column and needs none of this.

from importlib import import_module

from django.conf import settings
from django.db import migrations, models

# The expression of 0004, over the new row.
FORWARD = """
ALTER TABLE mailbox_message ALTER COLUMN search_tsv DROP EXPRESSION;
CREATE FUNCTION mailbox_message_search_tsv() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.search_tsv :=
        setweight(to_tsvector('german'::regconfig, coalesce(NEW.subject, '')), 'A') ||
        setweight(
            to_tsvector('simple'::regconfig, coalesce(NEW.from_name, '') || ' ' || coalesce(NEW.from_address, '')),
            'B'
        ) ||
        setweight(to_tsvector('german'::regconfig, left(coalesce(NEW.text_body, ''), 200000)), 'C');
    RETURN NEW;
END
$$;
CREATE TRIGGER message_search_tsv BEFORE INSERT OR UPDATE OF subject, from_name, from_address, text_body
    ON mailbox_message FOR EACH ROW EXECUTE FUNCTION mailbox_message_search_tsv();
ALTER TABLE mailbox_message SET (fillfactor = 90);
"""

# Back to 0004's generated column: the trigger goes, then 0004's own statements drop the column with its index and
# add them again.
BACKWARD = """
ALTER TABLE mailbox_message RESET (fillfactor);
DROP TRIGGER IF EXISTS message_search_tsv ON mailbox_message;
DROP FUNCTION IF EXISTS mailbox_message_search_tsv();
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FORWARD)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        search = import_module("mailbox.migrations.0004_message_search_postgres")
        schema_editor.execute(BACKWARD)
        schema_editor.execute(search.BACKWARD)
        schema_editor.execute(search.FORWARD)


class Migration(migrations.Migration):
    dependencies = [
        ("mailbox", "0022_nav_count_indexes"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AlterField(
            model_name="message",
            name="claimed_by",
            field=models.ForeignKey(
                blank=True,
                db_index=False,
                null=True,
                on_delete=models.deletion.SET_NULL,
                related_name="claimed_messages",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.RunPython(forwards, backwards),
    ]
