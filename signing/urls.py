from __future__ import annotations

from django.urls import path

from signing.views import batches, comfort, drafts, manage, queue

app_name = "signing"

urlpatterns = [
    path("", queue.queue, name="queue"),
    path("alle/", queue.draft_list, name="drafts"),
    path("neu/", drafts.draft_create_view, name="draft-create"),
    path("entwurf/<int:pk>/", drafts.draft_detail, name="draft-detail"),
    path("entwurf/<int:pk>/bearbeiten/", drafts.draft_edit, name="draft-edit"),
    path("entwurf/<int:pk>/dokument/", drafts.draft_document, name="draft-document"),
    path("entwurf/<int:pk>/signiert/", drafts.draft_signed, name="draft-signed"),
    path("signieren/", batches.batch_start, name="batch-start"),
    path("vorgaenge/", batches.batch_list, name="batches"),
    path("vorgaenge/<int:pk>/", batches.batch_detail, name="batch"),
    path("vorgaenge/<int:pk>/abbrechen/", batches.batch_cancel_view, name="batch-cancel"),
    path("arbeitsplatz/", batches.workplace_choose, name="workplace-choose"),
    path("komfortsignatur/", comfort.comfort_page, name="comfort"),
    path("komfortsignatur/aktivieren/", comfort.comfort_activate_view, name="comfort-activate"),
    path("komfortsignatur/<int:pk>/beenden/", comfort.comfort_deactivate_view, name="comfort-deactivate"),
    path("verwaltung/ehba/", manage.cards, name="manage-cards"),
    path("verwaltung/ehba/<int:pk>/entfernen/", manage.card_remove, name="manage-card-remove"),
    path("verwaltung/arbeitsplaetze/", manage.workplaces, name="manage-workplaces"),
    path("verwaltung/arbeitsplaetze/<int:pk>/", manage.workplace_edit, name="manage-workplace-edit"),
]
