"""Why a Komfortsignatur failed or ended, and why a batch fell back to the PIN, are kept as msgid and parameters
(kimportal.texts), translated when shown, as the queue's reasons are (0010).

The text columns become JSON columns. A row written before keeps its German sentence, as a JSON string, and is
shown as it is: nothing is lost. A new column is filled and then takes the old one's name, so the same steps work
on PostgreSQL and on SQLite (a cast of free text to JSON would fail on either).
"""

from __future__ import annotations

from typing import Any

from django.db import migrations, models

FIELDS = [("comfortactivation", "error_text"), ("comfortuse", "fallback_text")]


def _copy(apps: Any, schema_editor: Any, *, forward: bool) -> None:
    for model_name, field in FIELDS:
        model = apps.get_model("signing", model_name)
        source, target = (field, f"{field}_stored") if forward else (f"{field}_stored", field)
        if forward and schema_editor.connection.vendor == "postgresql":
            # One statement, not a round trip per row (a big table has many).
            table, quote = model._meta.db_table, schema_editor.quote_name
            # Names from the model, quoted; no value of anyone's in the statement.
            sql = f"UPDATE {quote(table)} SET {quote(target)} = to_jsonb({quote(source)}) WHERE {quote(source)} <> ''"  # noqa: S608
            schema_editor.execute(sql)
            continue
        rows = model.objects.exclude(**{source: ""}).values_list("pk", source)
        for pk, value in rows.iterator(chunk_size=2000):
            if not forward and not isinstance(value, str):
                # Back to free text: the German sentence, as the code before wrote it (the column holds 500).
                from django.utils import translation

                from kimportal.texts import render

                with translation.override("de"):
                    value = render(value)[:500]
            model.objects.filter(pk=pk).update(**{target: value})


def forwards(apps: Any, schema_editor: Any) -> None:
    _copy(apps, schema_editor, forward=True)


def backwards(apps: Any, schema_editor: Any) -> None:
    _copy(apps, schema_editor, forward=False)


def _operations() -> list[migrations.operations.base.Operation]:
    add = [
        migrations.AddField(model_name=m, name=f"{f}_stored", field=models.JSONField(blank=True, default=str))
        for m, f in FIELDS
    ]
    swap: list[migrations.operations.base.Operation] = []
    for m, f in FIELDS:
        swap += [
            migrations.RemoveField(model_name=m, name=f),
            migrations.RenameField(model_name=m, old_name=f"{f}_stored", new_name=f),
        ]
    return [*add, migrations.RunPython(forwards, backwards), *swap]


class Migration(migrations.Migration):
    dependencies = [("signing", "0010_reasons_translated_when_shown")]

    operations = _operations()
