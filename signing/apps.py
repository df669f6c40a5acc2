from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class SigningConfig(AppConfig):
    name = "signing"
    verbose_name = _("Signatur")

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_out

        from signing.services.comfort import comfort_end_on_logout

        # Logging out (also the idle sign-out) ends the physician's Komfortsignatur.
        user_logged_out.connect(comfort_end_on_logout, dispatch_uid="signing-comfort-logout")

        from mailbox.extensions import MessagePanel, message_content_deleted, messages_ingested, panel_register
        from signing.services.received import PANEL, on_message_content_deleted, on_messages_ingested
        from signing.views.received import panel_applies, panel_live, panel_render

        # Received letters: a fetch round's new mail that may carry signatures is checked by the Konnektor (a task
        # per message), and the message page shows who signed and the result (signing.services.received); the
        # results go when retention deletes the message's content.
        messages_ingested.connect(on_messages_ingested, dispatch_uid="signing-received-signatures")
        message_content_deleted.connect(on_message_content_deleted, dispatch_uid="signing-received-content-deleted")
        panel_register(MessagePanel(name=PANEL, render=panel_render, applies=panel_applies, live=panel_live))

        from mailbox.extensions import blob_keeper_register, notification_link_register
        from signing.services.blobs import blobs_still_needed
        from signing.views.links import SIGNING_NOTIFICATION_KINDS, notification_draft_link

        # The blob store is shared with mailbox: its retention must not delete a draft's document, an earlier
        # version's or a signed result because a deleted message carried the same bytes.
        blob_keeper_register("signing", blobs_still_needed)
        # Notifications about drafts (to sign, to review, returned, approved) lead to the draft's page.
        notification_link_register(SIGNING_NOTIFICATION_KINDS, notification_draft_link)
