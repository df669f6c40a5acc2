from django.db import migrations

# Full-text search on PostgreSQL with the German configuration: a stored generated tsvector and a GIN
# index. Not a model field, so the model stays portable; SQLite falls back to substring search.
# Bodies are cut at 200,000 characters (tsvector has a 1 MB limit; long bodies are rare in KIM).
FORWARD = """
ALTER TABLE mailbox_message ADD COLUMN search_tsv tsvector GENERATED ALWAYS AS (
    setweight(to_tsvector('german'::regconfig, coalesce(subject, '')), 'A') ||
    setweight(to_tsvector('simple'::regconfig, coalesce(from_name, '') || ' ' || coalesce(from_address, '')), 'B') ||
    setweight(to_tsvector('german'::regconfig, left(coalesce(text_body, ''), 200000)), 'C')
) STORED;
CREATE INDEX message_search_tsv ON mailbox_message USING gin (search_tsv);
"""
BACKWARD = """
DROP INDEX IF EXISTS message_search_tsv;
ALTER TABLE mailbox_message DROP COLUMN IF EXISTS search_tsv;
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FORWARD)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(BACKWARD)


class Migration(migrations.Migration):
    dependencies = [("mailbox", "0003_collaboration")]
    operations = [migrations.RunPython(forwards, backwards)]
