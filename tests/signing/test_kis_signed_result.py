"""From the KIS to a real QES and back: letters submitted over the API are signed by the physician's batch against
the simulated Konnektor (real sockets), and what the KIS downloads verifies — the signed PDF (PAdES) and the
detached signature (.p7s) over the very text the KIS submitted — with the signature's QES CA."""

from __future__ import annotations

import base64

import pytest
from django.test import Client

from signing.api.services import kis_client_create
from signing.models import Draft
from signing.services.batch import Selected, batch_create
from signing.services.run import batch_run
from signing.services.verify import verify_cades_detached, verify_pades
from tests.fixtures.konnektor_sim import CT_ID, MANDANT, WORKPLACE
from tests.signing.documents import LETTER_TEXT, make_pdf
from tests.signing.factories import WorkplaceFactory
from tests.signing.kis import Api, submission

pytestmark = pytest.mark.django_db


def test_the_kis_downloads_signatures_that_verify(
    konnektor_sim, settings, tmp_path, manager, mailbox, signer, assistant, django_capture_on_commit_callbacks
):
    ca = tmp_path / "qes-ca.pem"
    ca.write_bytes(konnektor_sim.qes_ca_pem)
    settings.KIMPORTAL_KONNEKTOR_URL = konnektor_sim.base_url
    settings.KIMPORTAL_KONNEKTOR_MODE = konnektor_sim.mode
    settings.KIMPORTAL_KONNEKTOR_MANDANT = MANDANT
    settings.KIMPORTAL_KONNEKTOR_CLIENT_SYSTEM = konnektor_sim.client_system_id
    settings.KIMPORTAL_KONNEKTOR_QES_CA = str(ca)
    settings.KIMPORTAL_KONNEKTOR_TIMEOUT = 10.0
    settings.KIMPORTAL_KONNEKTOR_SIGN_TIMEOUT = 60.0
    workplace = WorkplaceFactory(workplace_id=WORKPLACE, ct_id=CT_ID)

    api = Api(Client(), kis_client_create(manager=manager, name="KIS", mailboxes=[mailbox]).token)
    pdf = make_pdf("Entlassbrief für die KIS-Probe")
    letter = {"filename": "brief.pdf", "content_base64": base64.b64encode(pdf).decode()}
    text = {"filename": "befund.txt", "content_base64": base64.b64encode(LETTER_TEXT).decode()}
    for document_id, document in (("KIS-PDF", letter), ("KIS-TXT", text)):
        body = submission(document_id, mailbox=mailbox.address, document=document)
        assert api.submit(body).status_code == 201
    assert api.signed("KIS-PDF").json()["code"] == "not_signed"

    drafts = list(Draft.objects.order_by("pk"))
    with django_capture_on_commit_callbacks(execute=False):
        batch = batch_create(
            signer=signer, workplace=workplace, selected=[Selected(d.pk, d.version, d.sha256) for d in drafts]
        )
    batch_run(batch.pk)  # as the worker would; the simulator types the PIN

    state = api.get("KIS-PDF").json()
    assert state["state"] == "signed" and state["signed"]["format"] == "pades"
    signed_pdf = api.signed("KIS-PDF")
    assert signed_pdf.status_code == 200 and signed_pdf["Content-Type"] == "application/pdf"
    assert signed_pdf.body_bytes.startswith(pdf) and len(signed_pdf.body_bytes) == state["signed"]["size"]
    card = konnektor_sim.cards[0].certificate_der
    verify_pades(
        document=pdf, signed_pdf=signed_pdf.body_bytes, card_certificates=[card], ca_pem=konnektor_sim.qes_ca_pem
    )

    assert api.get("KIS-TXT").json()["signed"]["format"] == "cades"
    p7s = api.signed("KIS-TXT")
    assert p7s["Content-Type"] == "application/pkcs7-signature"
    assert 'filename="befund.txt.p7s"' in p7s["Content-Disposition"]
    verify_cades_detached(
        document=LETTER_TEXT, cms_der=p7s.body_bytes, card_certificates=[card], ca_pem=konnektor_sim.qes_ca_pem
    )
