"""Message lists, filters, search and the detail page, always starting from the user."""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache, lru_cache
from operator import itemgetter
from typing import Any, Literal

from django.contrib.auth import get_user_model
from django.contrib.postgres.expressions import ArraySubquery
from django.core.paginator import Page, Paginator
from django.db import connection, models, router
from django.db.models import BooleanField, Exists, Model, OuterRef, Q, QuerySet, Subquery
from django.db.models.base import ModelState
from django.db.models.expressions import RawSQL
from django.db.models.fields.related_descriptors import ForeignKeyDeferredAttribute
from django.db.models.functions import Cast, JSONArray
from django.db.models.query_utils import DeferredAttribute
from django.db.models.signals import post_init, pre_init
from django.urls import get_script_prefix, reverse
from django.utils import translation

from kimportal.prepared import PreparedQuery
from kimportal.requestscope import scoped
from mailbox.dienstkennung import badge_for, dienstkennung_badges
from mailbox.models import (
    AssignmentPeriod,
    Attachment,
    Mailbox,
    Message,
    MessageRead,
    Note,
    Presence,
    member_mailbox_ids,
    member_roles,
    memberships_in_force,
)
from mailbox.permissions import strongest_role, user_role
from mailbox.selectors.pagination import PAGE_SIZE, KeysetPage, SortKey, order_by
from mailbox.selectors.presence import presence_for_messages


def _with_user_state(qs: QuerySet[Message], user: Any) -> QuerySet[Message]:
    # django-stubs' plugin rejects annotating a name the model declares (for rows set by hand); Django only a field.
    return qs.select_related("mailbox", "assignee", "claimed_by").annotate(  # type: ignore[no-redef]
        is_read=Exists(MessageRead.objects.filter(message=OuterRef("pk"), user=user)),
    )


@dataclass(frozen=True)
class MessageFilter:
    view: str = "all"  # all | unassigned | mine | open
    state: str = ""
    dienstkennung: str = ""  # an application ("Arztbrief") or a full value
    date_from: date | None = None
    date_to: date | None = None
    q: str = ""
    sort: str = "-received"
    queue: int | None = None  # a MailboxQueue id (routing rules file messages into queues)


_USER_NAME = ("first_name", "last_name", "username")
LIST_ROW_FIELDS = (
    *("mailbox_id", "received_at", "from_name", "from_address", "subject", "dienstkennung", "state"),
    *("decryption_results", "integrity_results", "kim_error_codes", "is_malformed", "attachment_count"),
    *("assignee_id", "claimed_by_id", "claimed_at", "claim_expires_at", "mailbox__display_name"),
    *(f"assignee__{f}" for f in _USER_NAME),
    *(f"claimed_by__{f}" for f in _USER_NAME),
)

_RECEIVED_DESC = [SortKey("received_at", True, datetime), SortKey("id", True, int)]
SORTS: dict[str, list[SortKey]] = {
    "-received": _RECEIVED_DESC,
    "received": [SortKey("received_at", False, datetime), SortKey("id", False, int)],
    "from": [SortKey("from_name", False), SortKey("from_address", False), *_RECEIVED_DESC],
    "subject": [SortKey("subject", False), *_RECEIVED_DESC],
}


def apply_filter(qs: QuerySet[Message], user: Any, f: MessageFilter) -> QuerySet[Message]:
    if f.view == "unassigned":
        qs = qs.filter(assignee__isnull=True).exclude(state=Message.State.DONE)
    elif f.view == "mine":
        # "Mir zugewiesen" is a to-do list: finished ones only when asked for by the state filter.
        qs = qs.filter(assignee=user)
        if not f.state:
            qs = qs.exclude(state=Message.State.DONE)
    elif f.view == "open":
        qs = qs.exclude(state=Message.State.DONE)
    if f.state in Message.State.values:
        qs = qs.filter(state=f.state)
    if f.dienstkennung:
        value = f.dienstkennung.strip()
        qs = qs.filter(dienstkennung=value) if ";" in value else qs.filter(dienstkennung__istartswith=f"{value};")
    if f.date_from:
        qs = qs.filter(received_at__date__gte=f.date_from)
    if f.date_to:
        qs = qs.filter(received_at__date__lte=f.date_to)
    if f.queue:
        # A queue of a mailbox the user cannot see matches nothing: the rows are already limited to theirs.
        qs = qs.filter(queue_entry__queue_id=f.queue)
    if f.q.strip():
        qs = _search(qs, f.q.strip())
    return qs


# A search's terms as websearch_to_tsquery reads them: a quoted phrase (to its closing quote or the end) or a word,
# either with "-" before it to exclude.
_SEARCH_TERM = re.compile(r'(-?)"([^"]*)"?|(\S+)')
# On PostgreSQL the parser itself says it: querytree() is "T" when no part of the query can use the index (only
# exclusions, or only words the German configuration drops as stop words besides them).
_EXCLUDES_ONLY = (
    "querytree(websearch_to_tsquery('german'::regconfig, %s)) = 'T'"
    " OR querytree(websearch_to_tsquery('simple'::regconfig, %s)) = 'T'"
)


def search_excludes_only(text: str) -> bool:
    """Whether a search (or one of its "or" alternatives) only excludes, like "-Labor": it matches nearly every
    message and no index finds them, so it would read the whole message table. Such a search is refused."""
    if "-" not in text:
        return False  # nothing excluded (the usual search asks the database nothing more)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT {_EXCLUDES_ONLY}", [text, text])
            return bool(cursor.fetchone()[0])
    alternatives: list[list[bool]] = [[]]  # per alternative: each term, whether it must occur
    for minus, phrase, word in _SEARCH_TERM.findall(text):
        if word and word.lower() == "or":
            alternatives.append([])
            continue
        if word.startswith("-"):
            minus, word = "-", word.lstrip("-")
        if re.search(r"\w", phrase or word):  # punctuation alone is no term
            alternatives[-1].append(not minus)
    return any(terms and not any(terms) for terms in alternatives)


def _readings(text: str) -> tuple[str, str, list[str]]:
    """The search's German and plain readings as tsquery SQL (with their parameters), each exclusion in both of
    them excluding the word's German and plain forms.

    The stored vector holds German stems for subject and body and plain words for the sender: "-Sommer" read as
    German only excluded "somm" and let a message from "Dr. Sommer" through whenever the German reading matched
    (and the German reading drops a stop word like "-den" altogether). So each exclusion is parsed as a stand-in
    number both configurations keep as it is, which ts_rewrite then replaces by both forms: the parser still
    builds the query ("or" keeps its meaning), and the result is a constant the index answers."""
    parts: list[str] = []
    terms: list[str] = []
    end = 0
    for found in _SEARCH_TERM.finditer(text):
        minus, phrase, word = found.groups()
        if (minus and phrase.strip()) or (word and word.startswith("-") and word.strip("-")):
            parts += [text[end : found.start()], f"-{len(terms) + 1:018d}"]
            terms.append(f'"{phrase}"' if phrase else word.lstrip("-"))
            end = found.end()
    parsed = "".join([*parts, text[end:]])
    readings = []
    for config in ("german", "simple"):
        sql = f"websearch_to_tsquery('{config}'::regconfig, %s)"
        for _term in terms:
            sql = (
                f"ts_rewrite({sql}, !! websearch_to_tsquery('simple'::regconfig, %s),"
                " !! (websearch_to_tsquery('german'::regconfig, %s) || websearch_to_tsquery('simple'::regconfig, %s)))"
            )
        readings.append(sql)
    params = [parsed, *(p for i, term in enumerate(terms, 1) for p in (f"{i:018d}", term, term))]
    return readings[0], readings[1], params


def _search(qs: QuerySet[Message], text: str) -> QuerySet[Message]:
    if connection.vendor == "postgresql":
        # The generated column search_tsv (migration 0004) has a GIN index; German stemming. A search that only
        # excludes (MessageFilterForm refuses it with the reason) matches nothing here: the condition is constant,
        # so PostgreSQL plans no scan at all instead of reading every message. The queries are constants too, so
        # the index still answers both readings.
        german, simple, reading_params = _readings(text)
        # Only fixed SQL is put together here; the search text and its terms are all parameters.
        sql = (
            f"(mailbox_message.search_tsv @@ {german} OR mailbox_message.search_tsv @@ {simple})"
            " AND NOT (querytree(websearch_to_tsquery('german'::regconfig, %s)) = 'T'"
            " OR querytree(websearch_to_tsquery('simple'::regconfig, %s)) = 'T')"
        )
        params = [*reading_params, *reading_params, text, text]
        return qs.filter(RawSQL(sql, params, output_field=BooleanField()))  # noqa: S611
    if search_excludes_only(text):
        return qs.none()
    # Embedded default (SQLite): every word must occur somewhere, and none with "-" before it.
    for word in text.split()[:8]:
        excluded = word.startswith("-") and len(word) > 1
        term = word[1:] if excluded else word
        found = (
            Q(subject__icontains=term)
            | Q(from_address__icontains=term)
            | Q(from_name__icontains=term)
            | Q(text_body__icontains=term)
        )
        qs = qs.exclude(found) if excluded else qs.filter(found)
    return qs


def _page_state(user_id: int) -> dict[str, Subquery]:
    """Per row of a view's first page: whether this user has read it, whether anyone has it open (presence).

    Folded into the page's compiled query instead of two more queries by the page's ids (64 parameters each,
    more than psycopg keeps parsed). Scalar subqueries (LIMIT 1), not EXISTS: PostgreSQL evaluates them per
    row shown, after the LIMIT (an index probe each), where it may hash all of a user's reads for an EXISTS.
    """
    return {
        "page_read": Subquery(
            MessageRead.objects.filter(message=OuterRef("pk"), user_id=user_id).values("message_id")[:1]
        ),
        "page_presence": Subquery(Presence.objects.filter(message=OuterRef("pk")).values("message_id")[:1]),
    }


_PAGE_STATE = tuple(_page_state(0))


def _reads_query(user_id: int, message_ids: list[int]) -> QuerySet[MessageRead, tuple[int]]:
    return MessageRead.objects.filter(user_id=user_id, message_id__in=message_ids).values_list("message_id")


# The other list pages (later pages, filters): compiled once per page length (kimportal.prepared), not per page.
_READS = PreparedQuery(_reads_query)


def message_list_for_user(
    user: Any,
    *,
    mailbox: Mailbox | None = None,
    page: int | str = 1,
    after: str = "",
    before: str = "",
    filters: MessageFilter | None = None,
    size: int = PAGE_SIZE,
) -> KeysetPage[Message]:
    f = filters or MessageFilter()
    keys = SORTS.get(f.sort, SORTS["-received"])
    db = router.db_for_read(Message)
    page_obj: KeysetPage[Any]
    if _is_plain_first_page(user, f, page, after, before):
        # The page everyone opens (a view's first page, no filter): a query compiled once per shape, with each
        # row's read state and whether anyone has it open.
        args: list[Any] = [sorted(member_roles(user)), user.pk]  # what visible_to(user) filters by, the reader
        if mailbox is not None:
            args.append(mailbox.pk)
        if f.view == "mine":
            args.append(user.pk)
        query = _plain_first_page(f.view, f.sort if f.sort in SORTS else "-received", size, mailbox is not None)
        found = query.rows(*args, using=db)
        shown = found[:size]
        page_obj = KeysetPage(shown, 1, size, has_next=len(found) > size, has_previous=False, keys=keys)
        page_obj.object_list = rows = list_rows(shown, db, json_text=True)
        read = {message.pk for message, row in zip(rows, shown, strict=True) if row[-2] is not None}
        # Who has a row open: asked only for the rows someone has open (usually none or a few).
        present_ids = [message.pk for message, row in zip(rows, shown, strict=True) if row[-1] is not None]
    else:
        # A delivery report matched to a sent message belongs to that message's timeline, not to the inbox.
        qs: QuerySet[Message] = Message.objects.visible_to(user).filter(is_delivery_report=False)
        if mailbox is not None:
            qs = qs.filter(mailbox=mailbox)
        qs = apply_filter(qs, user, f)
        # Only what a row shows (mailbox.rowcache.ROW_INPUTS) and the sort keys: building fifty messages with
        # three related objects each, every date and JSON field parsed, was most of this selector's CPU.
        page_obj = KeysetPage.fetch(
            qs.values_list(*LIST_COLUMNS), keys, page=page, after=after, before=before, size=size
        )
        page_obj.object_list = rows = list_rows(page_obj.object_list, db)
        # Read state and presence by the page's ids, in queries compiled once: folding them into this query
        # (compiled per request) cost more to compile than the two queries do to run.
        present_ids = [m.pk for m in rows]
        read = {message_id for (message_id,) in _READS.rows(user.pk, present_ids)} if present_ids else set()
    presence = presence_for_messages(present_ids) if present_ids else {}
    badges = list_badges()
    badge_memo: dict[str, Any] = {}  # a page has a handful of distinct Dienstkennungen
    url = _list_url_pattern(get_script_prefix())
    for message in rows:
        message.is_read = message.pk in read
        if message.dienstkennung not in badge_memo:
            badge_memo[message.dienstkennung] = badge_for(message.dienstkennung, badges)
        message.badge = badge_memo[message.dienstkennung]
        message.present = presence.get(message.pk, [])
        message.url = url.format(message.pk)
    return page_obj


_PLAIN_VIEWS = ("all", "open", "unassigned", "mine")


def _is_plain_first_page(user: Any, f: MessageFilter, page: int | str, after: str, before: str) -> bool:
    if after or before or not getattr(user, "is_authenticated", False):
        return False
    if f.view not in _PLAIN_VIEWS or f != MessageFilter(view=f.view, sort=f.sort):
        return False
    try:
        return int(page) <= 1  # as KeysetPage.fetch reads the number
    except (TypeError, ValueError):
        return True


_PLAIN_PAGES: dict[tuple[str, str, int, bool], PreparedQuery] = {}


def _plain_first_page(view: str, sort: str, size: int, one_mailbox: bool) -> PreparedQuery:
    """The query KeysetPage.fetch runs for the first page of this view, compiled once (kimportal.prepared).

    Its arguments: the user's mailbox ids (visible_to's filter), the user's id (the rows' read state), then the
    mailbox's id if one is shown, then the user's id for "mine".
    """
    key = (view, sort, size, one_mailbox)
    if key not in _PLAIN_PAGES:

        def build(mailbox_ids: list[int], reader_id: int, *rest: int) -> QuerySet[Message, tuple[Any, ...]]:
            more = iter(rest)
            qs: QuerySet[Message] = Message.objects.filter(mailbox_id__in=mailbox_ids, is_delivery_report=False)
            if one_mailbox:
                qs = qs.filter(mailbox_id=next(more))
            qs = apply_filter(qs, next(more, None), MessageFilter(view=view, sort=sort))
            qs = qs.annotate(**_page_state(reader_id), **_JSON_TEXT).order_by(*order_by(SORTS[sort]))
            return qs.values_list(*_PAGE_COLUMNS, *_PAGE_STATE)[: size + 1]

        _PLAIN_PAGES[key] = PreparedQuery(build)
    return _PLAIN_PAGES[key]


_MESSAGE_COLUMNS = tuple(
    f.attname for f in Message._meta.concrete_fields if f.attname == "id" or f.attname in LIST_ROW_FIELDS
)
_RELATED_COLUMNS = tuple(f for f in LIST_ROW_FIELDS if "__" in f)
# The columns of one list row, in the order list_rows reads them: a queryset's values_list(*LIST_COLUMNS) gives
# the tuples list_rows turns into messages (the list pages and a live row update read a row the same way).
LIST_COLUMNS = (*_MESSAGE_COLUMNS, *_RELATED_COLUMNS)
# The CM's result codes (JSON): a list page reads them as text and decodes each distinct text once per page (a
# handful of codes repeat on every row), not every row's three columns through the field's converter.
_JSON_FIELDS = [
    f for f in Message._meta.concrete_fields if f.attname in _MESSAGE_COLUMNS and f.get_internal_type() == "JSONField"
]
assert all(getattr(f, "decoder", None) is None for f in _JSON_FIELDS)  # as JSONField.from_db_value decodes them
_JSON_TEXT = {f"{f.attname}_text": Cast(f.attname, models.TextField()) for f in _JSON_FIELDS}
_JSON_POSITIONS = tuple(_MESSAGE_COLUMNS.index(f.attname) for f in _JSON_FIELDS)
# A list page's columns: LIST_COLUMNS with the JSON ones as text.
_PAGE_COLUMNS = tuple(f"{c}_text" if f"{c}_text" in _JSON_TEXT else c for c in LIST_COLUMNS)
_ATOMS = (str, int, float, bool, type(None))
# What Message.security reads (assess_security's arguments), picked from a list page's row.
_security_inputs = itemgetter(
    *(
        _MESSAGE_COLUMNS.index(c)
        for c in ("decryption_results", "integrity_results", "kim_error_codes", "dienstkennung")
    )
)


def _json_decoder() -> Callable[[str | None], Any]:
    """JSONField.from_db_value for one page's texts, decoding each distinct text once.

    Rows get equal values, never one shared object: a flat list (the codes) is copied, anything else decoded
    again.
    """
    memo: dict[str, tuple[Any, bool]] = {}

    def decode(text: str | None) -> Any:
        if text is None:
            return None
        known = memo.get(text)
        if known is None:
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                value = text
            known = memo[text] = (value, isinstance(value, list) and all(isinstance(v, _ATOMS) for v in value))
        value, flat = known
        if flat:
            return list(value)
        return json.loads(text) if isinstance(value, (dict, list)) else value

    return decode


_USER_COLUMNS = tuple(f.attname for f in get_user_model()._meta.concrete_fields if f.attname in ("id", *_USER_NAME))


class _RowLoader:
    """model.from_db(db, columns, values) for many rows of the same columns, made cheaper.

    Model.__init__ walks all of a model's fields for every row to skip the deferred ones (40 for a message, 16
    for a user, for fifty rows a page). Where it would do nothing else (the model's own __init__ and from_db,
    no pre_init or post_init receiver, only plain field attributes among the columns) the instance gets its
    state and its values directly: the same instance, attribute for attribute (tested).
    """

    def __init__(self, model: type[Model], columns: tuple[str, ...]) -> None:
        self.model = model
        self.columns = columns
        self.plain = (
            model.__init__ is Model.__init__
            and model.from_db.__func__ is Model.from_db.__func__  # type: ignore[attr-defined]
            and all(type(vars(model).get(c)) in (DeferredAttribute, ForeignKeyDeferredAttribute) for c in columns)
        )

    def maker(self, db: str) -> Callable[[Sequence[Any]], Any]:
        model, columns = self.model, self.columns
        if not self.plain or pre_init.has_listeners(model) or post_init.has_listeners(model):
            return lambda values: model.from_db(db, columns, values)

        def make(values: Sequence[Any]) -> Any:
            instance = model.__new__(model)
            state = instance._state = ModelState()
            state.adding = False
            state.db = db
            instance.__dict__.update(zip(columns, values, strict=True))
            return instance

        return make


def list_rows(rows: Sequence[tuple[Any, ...]], db: str, *, json_text: bool = False) -> list[Message]:
    """Messages from rows of values_list(*LIST_COLUMNS) read from database alias `db` (with `json_text`, of
    a list page's columns: the JSON ones as text, decoded here).

    Only the list's columns are loaded (the others deferred, as only() leaves them), their mailbox and users
    built once per page rather than once per row: the rows come as tuples, and select_related made four model
    instances for each of them. The messages carry no read state, badge, presence or URL; the caller adds those.
    Columns after LIST_COLUMNS (a list page's read state and presence) are left to the caller.
    """
    mailbox_field, assignee_field, claimed_by_field = (
        Message.mailbox.field,
        Message.assignee.field,
        Message.claimed_by.field,
    )
    width, end = len(_MESSAGE_COLUMNS), len(LIST_COLUMNS)
    mailboxes: dict[int, Mailbox] = {}
    users: dict[int, Any] = {}
    new_message, new_user = _MESSAGES.maker(db), _users().maker(db)

    def user(pk: int | None, names: tuple[Any, ...]) -> Any:
        if pk is None:
            return None
        if pk not in users:
            first, last, username = names
            users[pk] = new_user(_user_values(pk, first, last, username))
        return users[pk]

    decode = _json_decoder() if json_text else None
    # A row's security state is a function of its result texts and Dienstkennung: assessed once per page for
    # each distinct combination (the assessment is immutable), not once per row by Message.security.
    assessments: dict[tuple[Any, ...], Any] = {}
    messages = []
    for row in rows:
        values: Sequence[Any] = row[:width]
        if decode is None:
            message = new_message(values)
        else:
            values = list(values)
            for position in _JSON_POSITIONS:
                values[position] = decode(values[position])
            message = new_message(values)
            key = _security_inputs(row)
            if key in assessments:
                message.__dict__["security"] = assessments[key]  # where the cached_property keeps its value
            else:
                assessments[key] = message.security
        display_name, *names = row[width:end]
        mailbox = mailboxes.get(message.mailbox_id)
        if mailbox is None:
            mailbox = mailboxes[message.mailbox_id] = Mailbox.from_db(
                db, ("id", "display_name"), (message.mailbox_id, display_name)
            )
        mailbox_field.set_cached_value(message, mailbox)
        assignee_field.set_cached_value(message, user(message.assignee_id, tuple(names[:3])))
        claimed_by_field.set_cached_value(message, user(message.claimed_by_id, tuple(names[3:])))
        messages.append(message)
    return messages


_MESSAGES = _RowLoader(Message, _MESSAGE_COLUMNS)


@cache
def _users() -> _RowLoader:
    return _RowLoader(get_user_model(), _USER_COLUMNS)


def _user_values(pk: int, first_name: str, last_name: str, username: str) -> tuple[Any, ...]:
    named = {"id": pk, "first_name": first_name, "last_name": last_name, "username": username}
    return tuple(named[column] for column in _USER_COLUMNS)


def list_badges() -> dict[str, Any]:
    """dienstkennung_badges() read once per request: a list page's rows and its filter bar both show them."""
    return scoped(("mailbox.list_badges", translation.get_language()), dienstkennung_badges)


@lru_cache(maxsize=8)
def _list_url_pattern(script_prefix: str) -> str:
    # detail_url_pattern() per process and script prefix (reverse() prepends the request's), not per list page.
    return detail_url_pattern()


def detail_url_pattern() -> str:
    """The detail URL with a {} for the id: one reverse() per page instead of one per row."""
    return reverse("mailbox:message-detail", args=[987654321]).replace("987654321", "{}")


def message_get_for_user(user: Any, pk: int) -> Message:
    message = _with_user_state(Message.objects.visible_to(user), user).get(pk=pk)
    message.badge = badge_for(message.dienstkennung, dienstkennung_badges())
    message.present = presence_for_messages([message.pk]).get(message.pk, [])
    message.url = detail_url_pattern().format(message.pk)
    return message


def message_out_of_reach(user: Any, pk: int) -> bool:
    """Whether the user opened the message once and may not see it now (removed from its mailbox or from the ward
    that gave the membership, the mailbox switched off): a page still open on it is told why its actions do
    nothing. A message the user never opened stays nobody's business (False: the caller answers 404)."""
    if not user.is_authenticated:
        return False
    return (
        MessageRead.objects.filter(message_id=pk, user_id=user.pk).exists()
        and not Message.objects.visible_to(user).filter(pk=pk).exists()
    )


class _Unknown(enum.Enum):
    ROLE = "unknown"  # a sentinel: None is a role ("not a member")


# The detail page's row: the message, its mailbox, the names of its assignee and lock holder, and whether the
# lists below it have anything (their queries are skipped when not; on PostgreSQL it brings the attachments
# themselves). One query compiled once per process
# (kimportal.prepared): building and compiling the ORM querysets was a fifth of the page's CPU.
_DETAIL_COLUMNS = tuple(field.attname for field in Message._meta.concrete_fields)
_MAILBOX_COLUMNS = tuple(field.attname for field in Mailbox._meta.concrete_fields)
# In the model's order of fields: Model.from_db() takes a subset's values in that order.
_PERSON = tuple(f.attname for f in get_user_model()._meta.concrete_fields if f.attname in ("id", *_USER_NAME))
_ATTACHMENT_COLUMNS = tuple(field.attname for field in Attachment._meta.concrete_fields)
_NOTE_COLUMNS = tuple(field.attname for field in Note._meta.concrete_fields)
_PERIOD_COLUMNS = tuple(field.attname for field in AssignmentPeriod._meta.concrete_fields)


# The detail page lists a message's first attachments only (its row's attachment_count says how many there are);
# all of them are on their own pages. A message of 10,000 attachments made a page of 1.9 MB.
ATTACHMENTS_SHOWN = 50
ATTACHMENTS_PAGE_SIZE = 200


@dataclass(frozen=True)
class DetailLists:
    """Which of the detail page's lists have rows (from the message's row): the others are not read."""

    has_attachments: bool
    has_notes: bool
    has_periods: bool
    has_presence: bool
    # The attachments' rows (_ATTACHMENT_COLUMNS) when the message's row brought them (PostgreSQL).
    attachments: list[list[Any]] | None = None


_DETAIL_FLAGS = ("has_attachments", "has_notes", "has_periods", "has_presence")


def _listed_attachments(message: Any) -> QuerySet[Attachment]:
    """A message's attachments as its page lists them: in their order, without the images its HTML shows."""
    return Attachment.objects.filter(message=message, is_inline=False).order_by("position")


def _detail_query(pk: int, mailbox_ids: list[int]) -> QuerySet[Message, tuple[Any, ...]]:
    def exists(model: type[models.Model]) -> Exists:
        return Exists(model._default_manager.filter(message=OuterRef("pk")))

    attachments: Exists | ArraySubquery = Exists(_listed_attachments(OuterRef("pk")))
    if connection.vendor == "postgresql":
        # The first attachments themselves: one round trip less than asking whether there are any and then reading
        # them. Each as a JSON array of its columns (all numbers, strings and a flag). One more than the page shows:
        # whether there are more is known from the rows, not from the row's count.
        attachments = ArraySubquery(
            _listed_attachments(OuterRef("pk")).values(row=JSONArray(*_ATTACHMENT_COLUMNS))[: ATTACHMENTS_SHOWN + 1]
        )
    return (
        Message.objects.filter(pk=pk, mailbox_id__in=mailbox_ids)
        .order_by()
        .annotate(
            has_attachments=attachments,
            has_notes=exists(Note),
            has_periods=exists(AssignmentPeriod),
            has_presence=exists(Presence),
        )
        .values_list(
            *_DETAIL_COLUMNS,
            *(f"mailbox__{c}" for c in _MAILBOX_COLUMNS),
            *(f"assignee__{c}" for c in _PERSON),
            *(f"claimed_by__{c}" for c in _PERSON),
            *_DETAIL_FLAGS,
        )
    )


_DETAIL = PreparedQuery(_detail_query)


def _attachments_query(message_id: int) -> QuerySet[Attachment, tuple[Any, ...]]:
    return _listed_attachments(message_id).values_list(*_ATTACHMENT_COLUMNS)[: ATTACHMENTS_SHOWN + 1]


def _notes_query(message_id: int) -> QuerySet[Note, tuple[Any, ...]]:
    return (
        Note.objects.filter(message_id=message_id)
        .order_by("created_at", "id")
        .values_list(*_NOTE_COLUMNS, *(f"author__{c}" for c in _PERSON))
    )


def _visible_notes_query(message_id: int, user_id: int) -> QuerySet[Note, tuple[Any, ...]]:
    # As _notes_query, for a user's eyes: the message's mailbox among theirs, as a subquery (see _lock_query).
    return _notes_query(message_id).filter(message__mailbox_id__in=member_mailbox_ids(get_user_model()(pk=user_id)))


def _periods_query(message_id: int) -> QuerySet[AssignmentPeriod, tuple[Any, ...]]:
    return (
        AssignmentPeriod.objects.filter(message_id=message_id)
        .order_by("started_at", "id")
        .values_list(*_PERIOD_COLUMNS, *(f"user__{c}" for c in _PERSON), *(f"assigned_by__{c}" for c in _PERSON))
    )


def _readers_query(message_id: int) -> QuerySet[MessageRead, tuple[Any, ...]]:
    return (
        MessageRead.objects.filter(message_id=message_id)
        .order_by("read_at")
        .values_list("user__first_name", "user__last_name", "user__username", "read_at")
    )


_ATTACHMENTS = PreparedQuery(_attachments_query)
_NOTES = PreparedQuery(_notes_query)
# A message page's socket reads the notes again on each note added: compiled once (kimportal.prepared).
_VISIBLE_NOTES = PreparedQuery(_visible_notes_query)
_PERIODS = PreparedQuery(_periods_query)
_READERS = PreparedQuery(_readers_query)


def _person(values: tuple[Any, ...]) -> Any:
    """A user with only the columns a page names them by (like select_related's, or None for a NULL key)."""
    return get_user_model().from_db("default", _PERSON, values) if values[0] is not None else None


def _related(instance: models.Model, name: str, value: Any) -> None:
    """Set a foreign key's object as select_related would have (no query when the template follows it)."""
    getattr(type(instance), name).field.set_cached_value(instance, value)


def message_detail_row_for_user(user: Any, pk: int) -> tuple[Message, DetailLists]:
    """The detail page's message with its mailbox, assignee and lock holder (Message.DoesNotExist when the user
    may not see it); message_detail_lists() adds the rest. Split so that opening the message (audit, read,
    claim) runs between the two and the lists show the read it adds, without reading the row twice."""
    mailbox_ids = sorted(member_roles(user)) if getattr(user, "is_authenticated", False) else []
    rows = _DETAIL.rows(pk, mailbox_ids) if mailbox_ids else []
    if not rows:
        raise Message.DoesNotExist("No Message matches the given query.")
    row = rows[0]
    end = len(_DETAIL_COLUMNS)
    message = Message.from_db("default", _DETAIL_COLUMNS, row[:end])
    mailbox = Mailbox.from_db("default", _MAILBOX_COLUMNS, row[end : end + len(_MAILBOX_COLUMNS)])
    end += len(_MAILBOX_COLUMNS)
    _related(message, "mailbox", mailbox)
    _related(message, "assignee", _person(row[end : end + len(_PERSON)]))
    end += len(_PERSON)
    _related(message, "claimed_by", _person(row[end : end + len(_PERSON)]))
    end += len(_PERSON)
    attachments, has_notes, has_periods, has_presence = row[end:]
    lists = DetailLists(
        bool(attachments),
        bool(has_notes),
        bool(has_periods),
        bool(has_presence),
        # On PostgreSQL the first attachments' rows themselves (an empty list: none), elsewhere whether there are any.
        attachments=attachments if isinstance(attachments, list) else None,
    )
    message.badge = badge_for(message.dienstkennung, dienstkennung_badges())
    message.url = detail_url_pattern().format(message.pk)
    return message, lists


def _notes(message_id: int) -> list[Note]:
    return _note_rows(_NOTES.rows(message_id))


def _note_rows(rows: list[tuple[Any, ...]]) -> list[Note]:
    notes = []
    split = len(_NOTE_COLUMNS)
    for row in rows:
        note = Note.from_db("default", _NOTE_COLUMNS, row[:split])
        _related(note, "author", _person(row[split:]))
        notes.append(note)
    return notes


def note_list_for_user(user: Any, message_id: int) -> list[Note]:
    """The notes of a message the user sees, as its page lists them (oldest first, with their authors); none when
    the user does not see it. Whether they do is asked within the notes' own query, so a socket that has just read
    the message for its lock panel pays no second round trip for it."""
    if not user.is_authenticated:
        return []
    return _note_rows(_VISIBLE_NOTES.rows(message_id, user.pk))


def message_detail_lists(
    user: Any,
    message: Message,
    lists: DetailLists,
    *,
    role: str | Literal[_Unknown.ROLE] | None = _Unknown.ROLE,
    readers: list[tuple[str, str, str, datetime]] | None = None,
) -> Message:
    """The rest of the detail page for a message from message_detail_row_for_user() (no queries from the
    template): the user's role and the lists, of which only those its row says are not empty are read.

    `readers` may be passed when the caller has them already (opening the message returns them)."""
    message.role = user_role(user, message.mailbox_id) if role is _Unknown.ROLE else role
    message.present = presence_for_messages([message.pk]).get(message.pk, []) if lists.has_presence else []
    attachments: Sequence[Sequence[Any]] = (
        lists.attachments
        if lists.attachments is not None
        else (_ATTACHMENTS.rows(message.pk) if lists.has_attachments else [])
    )
    # The first ATTACHMENTS_SHOWN listed attachments (the images its HTML shows are not listed), and whether more.
    message.attachment_list = [
        Attachment.from_db("default", _ATTACHMENT_COLUMNS, row) for row in attachments[:ATTACHMENTS_SHOWN]
    ]
    message.attachments_more = len(attachments) > ATTACHMENTS_SHOWN
    # How many there are: the row's count, unless it stopped at its column's limit (then they are counted, which only
    # a hostile or broken mail of more than 32,767 parts costs).
    message.attachment_total = message.attachment_count
    if message.attachments_more and message.attachment_count >= Message.ATTACHMENT_COUNT_MAX:
        message.attachment_total = _listed_attachments(message.pk).count()
    message.note_list = _notes(message.pk) if lists.has_notes else []
    periods = []
    if lists.has_periods:
        split = len(_PERIOD_COLUMNS)
        for row in _PERIODS.rows(message.pk):
            period = AssignmentPeriod.from_db("default", _PERIOD_COLUMNS, row[:split])
            _related(period, "user", _person(row[split : split + len(_PERSON)]))
            _related(period, "assigned_by", _person(row[split + len(_PERSON) :]))
            periods.append(period)
    message.assignment_history = periods
    # (first name, last name, username, read at), oldest first
    message.readers = _READERS.rows(message.pk) if readers is None else readers
    return message


def message_detail_for_user(
    user: Any, pk: int, *, role: str | Literal[_Unknown.ROLE] | None = _Unknown.ROLE
) -> Message:
    """Everything the detail page shows, prefetched (no queries from the template).

    `role` may be passed when the caller has just looked it up for the same request.
    """
    message, lists = message_detail_row_for_user(user, pk)
    return message_detail_lists(user, message, lists, role=role)


def message_row_for_user(user: Any, pk: int) -> Message | None:
    """The list row of one message, or None when the user may not see it."""
    try:
        return message_get_for_user(user, pk)
    except Message.DoesNotExist:
        return None


def _ref_query(pk: int, user_id: int) -> QuerySet[Message, tuple[int]]:
    # As Message.objects.visible_to(user), with the user's mailboxes as a subquery: one round trip, and compiled
    # once (an unsaved stand-in with the id is all member_mailbox_ids needs, as for member_roles).
    return Message.objects.filter(pk=pk, mailbox_id__in=member_mailbox_ids(get_user_model()(pk=user_id))).values_list(
        "mailbox_id"
    )


# Every message page's socket asks it when it connects: compiled once (kimportal.prepared), not per socket.
_REF = PreparedQuery(_ref_query)


def message_ref_for_user(user: Any, pk: int) -> Message | None:
    """Just the id and mailbox of a message the user may see (None otherwise): for services that need no more."""
    if not user.is_authenticated:
        return None
    found = _REF.rows(pk, user.pk)
    # Loaded as .only("pk", "mailbox_id") loads it: the other fields deferred.
    return Message.from_db("default", ["id", "mailbox_id"], [pk, found[0][0]]) if found else None


_LOCK_OWN = ("mailbox_id", "version", "claimed_by_id", "claimed_at", "claim_expires_at")
# The lock panel's columns in the model's order (as Model.from_db takes them), then the holder's names.
_LOCK_COLUMNS = tuple(f.attname for f in Message._meta.concrete_fields if f.attname == "id" or f.attname in _LOCK_OWN)


def _lock_query(pk: int, user_id: int) -> QuerySet[Message, tuple[Any, ...]]:
    # As Message.objects.visible_to(user), with the user's mailboxes as a subquery (see _ref_query).
    return Message.objects.filter(pk=pk, mailbox_id__in=member_mailbox_ids(get_user_model()(pk=user_id))).values_list(
        *_LOCK_COLUMNS, *(f"claimed_by__{f}" for f in _USER_NAME)
    )


# Every socket of a message renders it on each lock or presence change: compiled once (kimportal.prepared).
_LOCK = PreparedQuery(_lock_query)


def _lock_role_query(pk: int, user_id: int) -> QuerySet[Message, tuple[Any, ...]]:
    # As _lock_query, with the user's strongest role in the message's mailbox (permissions.user_role's rule).
    role = strongest_role(memberships_in_force(get_user_model()(pk=user_id)).filter(mailbox_id=OuterRef("mailbox_id")))
    return (
        Message.objects.filter(pk=pk, mailbox_id__in=member_mailbox_ids(get_user_model()(pk=user_id)))
        .annotate(member_role=role)
        .values_list(*_LOCK_COLUMNS, *(f"claimed_by__{f}" for f in _USER_NAME), "member_role")
    )


# Every message page's socket asks it when it connects: compiled once (kimportal.prepared).
_LOCK_ROLE = PreparedQuery(_lock_role_query)


def message_lock_for_user(user: Any, pk: int) -> Message | None:
    """What the lock panel shows (holder, lease, version, who has it open), or None when not visible.

    Rendered for every socket of a message on each lock or presence change: no list-row extras. The message is
    loaded as .only() with select_related("claimed_by") would load it.
    """
    if not user.is_authenticated:
        return None
    return _lock_message(_LOCK.rows(pk, user.pk))


def message_lock_and_role_for_user(user: Any, pk: int, *, present: bool = True) -> Message | None:
    """As message_lock_for_user, with the user's role in its mailbox (`message.role`, as user_role answers) read
    in the same query: a message page's socket learns visibility, mailbox, role and panel in one round trip.
    `present=False`: who has it open is not read (`message.present` is then set by the caller)."""
    if not user.is_authenticated:
        return None
    found = _LOCK_ROLE.rows(pk, user.pk)
    if not found:
        return None
    message = _lock_message([found[0][:-1]], present=present)
    assert message is not None
    message.role = found[0][-1]
    return message


def _lock_message(found: Sequence[Sequence[Any]], *, present: bool = True) -> Message | None:
    if not found:
        return None
    width = len(_LOCK_COLUMNS)
    row = found[0]
    message = Message.from_db("default", _LOCK_COLUMNS, row[:width])
    holder = None
    if message.claimed_by_id is not None:
        first, last, username = row[width:]
        holder = _users().maker("default")(_user_values(message.claimed_by_id, first, last, username))
    Message.claimed_by.field.set_cached_value(message, holder)
    if present:
        message.present = presence_for_messages([message.pk]).get(message.pk, [])
    return message


def attachment_page_for_user(user: Any, *, message_pk: int, page: int | str, name: str = "") -> Page[Attachment]:
    """One page of the attachments a message lists (none when the user may not see it); a page number out of range
    or not a number gives the last or the first page. `name`: only those whose file name contains it (any case)."""
    listed = _listed_attachments(message_pk).filter(message__in=Message.objects.visible_to(user))
    if name:
        listed = listed.filter(filename__icontains=name)
    return Paginator(listed, ATTACHMENTS_PAGE_SIZE).get_page(page)


def attachment_get_for_user(user: Any, *, message_pk: int, position: int) -> Attachment:
    return Attachment.objects.select_related("message__mailbox").get(
        message__in=Message.objects.visible_to(user), message_id=message_pk, position=position
    )
