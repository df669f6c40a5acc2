"""Reads of the signing app, always starting from the user (a foreign pk is not found: 404)."""

from __future__ import annotations

from signing.selectors.drafts import (
    SORTS,
    DraftFilter,
    batch_context,
    batch_get_for_user,
    batch_items,
    batch_list_for_user,
    batch_rows_for_user,
    draft_get_for_user,
    draft_list_for_user,
    drafts_by_ids_for_user,
    drafts_signer_gone,
    sending_mailboxes,
    signature_get_for_user,
    signer_choices,
    user_filter_choices,
    workplace_choices,
)
from signing.selectors.review import (
    department_mailboxes,
    draft_version_get,
    draft_versions,
    last_return,
    review_count_for_user,
    review_list_for_user,
    review_rules,
    review_steps,
)

__all__ = [
    "SORTS",
    "DraftFilter",
    "batch_context",
    "batch_get_for_user",
    "batch_items",
    "batch_list_for_user",
    "batch_rows_for_user",
    "department_mailboxes",
    "draft_get_for_user",
    "draft_list_for_user",
    "draft_version_get",
    "draft_versions",
    "drafts_by_ids_for_user",
    "drafts_signer_gone",
    "last_return",
    "review_count_for_user",
    "review_list_for_user",
    "review_rules",
    "review_steps",
    "sending_mailboxes",
    "signature_get_for_user",
    "signer_choices",
    "user_filter_choices",
    "workplace_choices",
]
