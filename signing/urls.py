from __future__ import annotations

from django.urls import path

from signing.views import batches, comfort, drafts, manage, orphans, queue, received, review

app_name = "signing"

urlpatterns = [
    path("", queue.queue, name="queue"),
    path("alle/", queue.draft_list, name="drafts"),
    path("neu/", drafts.draft_create_view, name="draft-create"),
    path("entwurf/<int:pk>/", drafts.draft_detail, name="draft-detail"),
    path("entwurf/<int:pk>/bearbeiten/", drafts.draft_edit, name="draft-edit"),
    path("entwurf/<int:pk>/dokument/", drafts.draft_document, name="draft-document"),
    path("entwurf/<int:pk>/signiert/", drafts.draft_signed, name="draft-signed"),
    # Review before signature and the versions (issue 12).
    path("entwurf/<int:pk>/zurueckziehen/", drafts.draft_withdraw_view, name="draft-withdraw"),
    path("entwurf/<int:pk>/freigeben/", review.review_approve_view, name="review-approve"),
    path("entwurf/<int:pk>/zurueckgeben/", review.review_return_view, name="review-return"),
    path("entwurf/<int:pk>/pruefung/", review.review_request_view, name="review-request"),
    path("entwurf/<int:pk>/fassungen/", review.draft_versions_view, name="draft-versions"),
    path("entwurf/<int:pk>/fassungen/<int:number>/", review.version_detail, name="draft-version"),
    path("entwurf/<int:pk>/fassungen/<int:number>/dokument/", review.version_document, name="draft-version-document"),
    path("entwurf/<int:pk>/vergleich/", review.version_compare, name="draft-compare"),
    path("pruefen/", review.review_queue, name="review-queue"),
    path("verwaltung/pruefregeln/", review.review_rules, name="review-rules"),
    path("verwaltung/pruefregeln/<int:pk>/entfernen/", review.review_rule_remove, name="review-rule-remove"),
    path("signieren/", batches.batch_start, name="batch-start"),
    path("vorgaenge/", batches.batch_list, name="batches"),
    path("vorgaenge/<int:pk>/", batches.batch_detail, name="batch"),
    path("vorgaenge/<int:pk>/abbrechen/", batches.batch_cancel_view, name="batch-cancel"),
    path("arbeitsplatz/", batches.workplace_choose, name="workplace-choose"),
    path("komfortsignatur/", comfort.comfort_page, name="comfort"),
    path("komfortsignatur/aktivieren/", comfort.comfort_activate_view, name="comfort-activate"),
    path("komfortsignatur/<int:pk>/beenden/", comfort.comfort_deactivate_view, name="comfort-deactivate"),
    # Signatures on received letters: check again (the panel on the message page, signing.views.received).
    path("empfangen/<int:pk>/signaturen-pruefen/", received.received_verify, name="received-verify"),
    # Drafts whose author, signer and reviewer all left the mailbox: its owners hand them over.
    path("verwaist/", orphans.orphan_list, name="orphans"),
    path("verwaist/<int:pk>/uebernehmen/", orphans.orphan_take_over_view, name="orphan-take-over"),
    path("verwaist/<int:pk>/zurueckziehen/", orphans.orphan_withdraw_view, name="orphan-withdraw"),
    path("verwaltung/ehba/", manage.cards, name="manage-cards"),
    path("verwaltung/ehba/<int:pk>/entfernen/", manage.card_remove, name="manage-card-remove"),
    path("verwaltung/arbeitsplaetze/", manage.workplaces, name="manage-workplaces"),
    path("verwaltung/arbeitsplaetze/<int:pk>/", manage.workplace_edit, name="manage-workplace-edit"),
]
