"""The embedded default's two SQLite files: the channel layer's tables in one, everything else in the other.

channels_lite's router keeps its own tables out of the main file but lets every other app migrate into the
channels file too (it answers "no opinion" for them). The portal's data migrations then ran a second time
during `migrate --database channels` and read the main file through the default manager, where the first
run had already changed the schema (a fresh demo failed in 0011). Here each app migrates into one file only,
and Django skips RunPython operations of apps a database does not allow.
"""

from __future__ import annotations

from typing import Any

from channels_lite.router import ChannelsRouter


class EmbeddedRouter(ChannelsRouter):
    def allow_migrate(self, db: str, app_label: str, model_name: str | None = None, **hints: Any) -> bool:
        if app_label in self.route_app_labels:
            return db == self.database
        return db != self.database
