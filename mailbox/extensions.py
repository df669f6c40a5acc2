"""Extension points: how an app above mailbox (signing) joins in without mailbox importing it.

* ``messages_ingested`` — a Django signal sent once per fetch round, after the round's rows are committed, with
  the ids of the messages the round stored (keyword arguments ``mailbox_id`` and ``message_ids``). It runs in
  the fetch, whose speed is a measured target: a receiver does a query or two for the whole round and queues
  its own work (a task), never work per message. A failing receiver is logged; the fetch goes on.
* ``message_content_deleted`` — sent inside the transaction that deletes a message's content (retention), with
  ``message_id``: a receiver deletes what it keeps of that content in the same transaction (plain ``send``: a
  receiver that fails rolls the deletion back, so nothing is left half-deleted).
* Message panels — sections the message page shows below the attachments, registered by name: ``render``
  gives the panel's HTML for the page (the panel reads through the user's selectors itself), ``applies`` says
  from what the page has loaded anyway whether the panel has anything to show (no queries), and ``live`` gives
  the template and context the page's socket sends when ``panel_changed`` names the panel.
* Blob keepers — the blob store (mailbox.storage) is shared: other apps keep files there too (signing: a draft's
  document, its earlier versions, the signed PDF or .p7s). Retention deletes a blob only when no mailbox row and
  no keeper names it any more. A keeper gets a chunk of digests and returns those its rows still name, in a
  query or two for the whole chunk (never one per digest). A keeper that fails fails the deletion: better a
  file kept too long than a document lost.
* Notification links — where a notification without a message leads (signing: the draft page), by kind:
  a resolver gets the notification and returns a URL or None, computed from its params without queries (the
  page behind the link checks permission itself; a user who may not see it gets 404 there).

The upper app registers in its AppConfig.ready(); mailbox only calls what is registered.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.dispatch import Signal
from django.http import HttpRequest
from django.urls import reverse

from mailbox.events import message_group, send_to_group
from mailbox.models import Message, Notification

log = logging.getLogger(__name__)

messages_ingested = Signal()
message_content_deleted = Signal()


def messages_ingested_send(*, mailbox_id: int, message_ids: list[int]) -> None:
    """Tell the receivers about a fetch round's new messages. Call it outside any transaction (after commit)."""
    if not message_ids:
        return
    for receiver, outcome in messages_ingested.send_robust(
        sender=Message, mailbox_id=mailbox_id, message_ids=list(message_ids)
    ):
        if isinstance(outcome, Exception):
            # The mail is stored and DELEd already: a receiver's failure must not fail the fetch.
            log.error("messages_ingested receiver %r failed", receiver, exc_info=outcome)


def message_content_deleted_send(*, message_id: int) -> None:
    """Within the deleting transaction: the receivers delete their copies of the message's content too."""
    message_content_deleted.send(sender=Message, message_id=message_id)


@dataclass(frozen=True)
class MessagePanel:
    """A section of the message page that another app provides.

    ``render(request, message)``: the HTML (already rendered; "" for nothing). ``applies(message)``: whether to
    call ``render`` at all, decided from the prefetched message (its ``attachment_list``: the first listed
    attachments only; ``attachments_more`` says whether there are others), without queries where it can.
    ``live(user, message_id)``: (template, context) of the panel as the page's socket sends it (with
    hx-swap-oob), or None when the user may not see it (any more).
    """

    name: str
    render: Callable[[HttpRequest, Message], str]
    applies: Callable[[Message], bool]
    live: Callable[[Any, int], tuple[str, dict[str, Any]] | None]


_panels: dict[str, MessagePanel] = {}


def panel_register(panel: MessagePanel) -> None:
    """Register (or replace, by name) a message panel; called from an AppConfig.ready()."""
    _panels[panel.name] = panel


def panels() -> list[MessagePanel]:
    return list(_panels.values())


def panel_get(name: str) -> MessagePanel | None:
    return _panels.get(name)


def panel_changed(*, message_id: int, panel: str) -> None:
    """After the caller's commit, tell the message's open pages that a panel changed (ids only; each socket
    re-reads it through the user's selectors)."""
    event = {"type": "message.panel_changed", "message_id": message_id, "panel": panel, "seq": uuid.uuid4().hex}
    transaction.on_commit(lambda: send_to_group(message_group(message_id), event))


# --- blob keepers ------------------------------------------------------------------------------------------------

# Given digests (at most a few hundred), return those that the registering app's rows still name.
BlobKeeper = Callable[[list[str]], Iterable[str]]

_blob_keepers: dict[str, BlobKeeper] = {}


def blob_keeper_register(name: str, keeper: BlobKeeper) -> None:
    """Register (or replace, by name) a blob keeper; called from an AppConfig.ready()."""
    _blob_keepers[name] = keeper


def blobs_kept_elsewhere(shas: list[str]) -> set[str]:
    """Of these digests, those another app's keeper still needs. Exceptions propagate (nothing is deleted)."""
    kept: set[str] = set()
    if not shas:
        return kept
    for keeper in list(_blob_keepers.values()):
        kept.update(keeper(list(shas)))
    return kept


# --- notification links ------------------------------------------------------------------------------------------

NotificationLink = Callable[[Notification], "str | None"]

_notification_links: dict[str, NotificationLink] = {}


def notification_link_register(kinds: Iterable[str], resolver: NotificationLink) -> None:
    """Register the resolver of these notification kinds' links (replacing an earlier one of a kind)."""
    for kind in kinds:
        _notification_links[str(kind)] = resolver


def notification_link(notification: Notification) -> str | None:
    """Where the notification leads: its message, else what the kind's resolver says, else nowhere."""
    if notification.message_id is not None:
        return reverse("mailbox:message-detail", args=[notification.message_id])
    resolver = _notification_links.get(notification.kind)
    if resolver is None:
        return None
    try:
        return resolver(notification)
    except Exception:
        # A notification with odd params (e.g. from an older version) is shown without a link, never an error page.
        log.exception("notification link for %s (%s) failed", notification.pk, notification.kind)
        return None
