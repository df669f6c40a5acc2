"""The migration steps that turn free-text reason columns into stored texts (kimportal.texts: msgid and parameters,
translated when shown), shared by the migrations of every app that had such columns.

Each column becomes a JSON column. A row written before keeps its German sentence, as a JSON string, and is shown as
it is: nothing is lost. A new column is filled and then takes the old one's name, so the same steps work on
PostgreSQL and on SQLite (a cast of free text to JSON would fail on either). Backwards, a stored text becomes the
German sentence the code before wrote.

Migrations that ran depend on this behaviour: change it only in a new function.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from django.db import migrations, models
from django.db.migrations.operations.base import Operation


def _copy(
    apps: Any,
    schema_editor: Any,
    *,
    app_label: str,
    fields: list[tuple[str, str]],
    forward: bool,
    back_max_length: int | None,
) -> None:
    for model_name, field in fields:
        model = apps.get_model(app_label, model_name)
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
                from django.utils import translation

                from kimportal.texts import render

                with translation.override("de"):
                    value = render(value)
                if back_max_length is not None:
                    value = value[:back_max_length]
            model.objects.filter(pk=pk).update(**{target: value})


def text_to_stored(
    app_label: str,
    fields: list[tuple[str, str]],
    *,
    options: dict[str, dict[str, Any]] | None = None,
    back_max_length: int | None = None,
) -> list[Operation]:
    """The operations for these (model name, field) columns of one app. `options`: extra JSONField arguments per
    model name (editable, verbose_name); `back_max_length`: the old column's length, for the way back."""
    copy = partial(_copy, app_label=app_label, fields=fields, back_max_length=back_max_length)
    add: list[Operation] = [
        migrations.AddField(
            model_name=model_name,
            name=f"{field}_stored",
            field=models.JSONField(blank=True, default=str, **(options or {}).get(model_name, {})),
        )
        for model_name, field in fields
    ]
    swap: list[Operation] = []
    for model_name, field in fields:
        swap += [
            migrations.RemoveField(model_name=model_name, name=field),
            migrations.RenameField(model_name=model_name, old_name=f"{field}_stored", new_name=field),
        ]
    forwards = partial(copy, forward=True)
    backwards = partial(copy, forward=False)
    return [*add, migrations.RunPython(forwards, backwards), *swap]
