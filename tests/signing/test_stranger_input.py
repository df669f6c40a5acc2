"""A hostile or careless sender's input to the draft form: huge, empty, disguised and booby-trapped documents,
file names with paths, controls and 300 characters, recipients that are no KIM addresses, header injection in
subject and patient. Each is refused with a German text and nothing is stored, or stored harmlessly."""

from __future__ import annotations

import tracemalloc

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile, TemporaryUploadedFile
from django.urls import reverse

from audit.models import AuditEvent
from mailbox.storage import blob_path
from signing.forms import DraftForm
from signing.models import Draft
from signing.selectors import sending_mailboxes, signer_choices
from signing.services.documents import document_check
from signing.services.drafts import DraftData, draft_create
from signing.services.run import short_text_for
from tests.signing.documents import LETTER_TEXT, LETTER_XML, make_pdf

pytestmark = pytest.mark.django_db

# The Konnektor's ShortText alphabet (SIG:ShortText, 7.5 schema), at most 30 characters.
SHORT_TEXT_OK = r"[a-zA-Z 0-9_.\-äöüÄÖÜß]{1,30}"


def _data(physician, mailbox, **extra):
    data = {
        "document_type": "earztbrief",
        "patient_reference": "Muster, Erika",
        "signer": physician.pk,
        "mailbox": mailbox.pk,
        "recipients": "praxis@praxis-test.kim.telematik-test",
        "subject": "Entlassbrief",
        "body": "",
    }
    data.update(extra)
    return data


def _post(client, physician, mailbox, upload, **extra):
    data = _data(physician, mailbox, **extra)
    if upload is not None:
        data["document"] = upload
    return client.post(reverse("signing:draft-create"), data)


def _refused(response, text: str) -> None:
    """422 with the German text in the page, and nothing stored: no draft, no audit event."""
    body = response.content.decode()
    assert response.status_code == 422, response.status_code
    assert text in body, body[:2000]
    assert not Draft.objects.exists()
    assert not AuditEvent.objects.filter(action="signing.draft_created").exists()


# --- the document --------------------------------------------------------------------------------------------


def test_a_document_over_the_limit_is_refused_in_german_and_not_stored(client, assistant, physician, mailbox, settings):
    settings.KIMPORTAL_SIGNING_MAX_DOCUMENT_BYTES = 64 * 1024
    content = ("Arztbrief " * 10_000).encode()  # 100 KB of valid text
    client.force_login(assistant)
    response = _post(client, physician, mailbox, SimpleUploadedFile("brief.txt", content))
    _refused(response, "Die Datei ist zu groß")
    assert "höchstens 0.1 MB" in response.content.decode() or "höchstens 0,1 MB" in response.content.decode()
    # Nothing of it reached the blob store.
    from hashlib import sha256

    assert not blob_path(sha256(content).hexdigest()).exists()


def test_an_oversized_upload_is_refused_before_it_is_read_into_memory(
    tmp_path, physician, assistant, mailbox, settings
):
    """A 2 GB upload must not become 2 GB of RAM in a web worker: the size the upload declares is checked first."""
    settings.KIMPORTAL_SIGNING_MAX_DOCUMENT_BYTES = 1 * 2**20
    size = 24 * 2**20
    upload = TemporaryUploadedFile("brief.txt", "text/plain", size, "utf-8")
    chunk = b"Arztbrief\n" * 10_000
    written = 0
    while written < size:
        upload.write(chunk)
        written += len(chunk)
    upload.size = written
    upload.seek(0)
    form = DraftForm(
        _data(physician, mailbox),
        {"document": upload},
        signers=signer_choices(sending_mailboxes(assistant)),
        mailboxes=sending_mailboxes(assistant),
    )
    tracemalloc.start()
    try:
        valid = form.is_valid()
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        upload.close()
    assert not valid and "Die Datei ist zu groß" in str(form.errors["document"])
    assert peak < 4 * 2**20, f"{peak / 2**20:.1f} MiB allocated to refuse a {written / 2**20:.0f} MiB upload"


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        # Django's own FileField refuses a 0-byte upload before the document check (German as well).
        ("leer.txt", b"", "Die übertragene Datei ist leer."),
        ("brief.pdf", b"<html><script>alert(1)</script></html>", "kein PDF-Dokument"),
        ("brief.pdf", b"%PDF-1.7\n1 0 obj << >> endobj\n%%EOF", "beschädigt"),
        ("brief.exe", b"MZ\x90\x00\x03", "Dieser Dateityp kann nicht qualifiziert signiert werden"),
        ("brief.docx", b"PK\x03\x04 a word file", "Dieser Dateityp kann nicht qualifiziert signiert werden"),
        ("brief.txt", "Arztbrief in UTF-16".encode("utf-16"), "nicht UTF-8-kodiert"),
        ("brief.txt", b"Arztbrief\x00\x01\x02 mit Binaerdaten", "Binärdaten"),
        ("brief", b"\x00\x00\x00\x00", "Binärdaten"),
        ("brief.xml", b"<?xml version='1.0'?><a><b></a>", "nicht wohlgeformt"),
    ],
)
def test_documents_that_are_not_what_they_claim_are_refused(
    client, assistant, physician, mailbox, name, content, message
):
    client.force_login(assistant)
    _refused(_post(client, physician, mailbox, SimpleUploadedFile(name, content)), message)


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol9 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
]>
<lolz>&lol9;</lolz>"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE brief [<!ENTITY geheim SYSTEM "file:///etc/passwd">]>
<brief>&geheim;</brief>"""

EXTERNAL_DTD = b"""<?xml version="1.0"?>
<!DOCTYPE brief SYSTEM "http://127.0.0.1:9/evil.dtd">
<brief/>"""


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("bombe.xml", BILLION_LAUGHS),
        ("xxe.xml", EXTERNAL_ENTITY),
        ("dtd.xml", EXTERNAL_DTD),
        # The same bomb in UTF-16 (with BOM): lxml reads it, the DOCTYPE check must still see it.
        (
            "bombe16.xml",
            BILLION_LAUGHS.decode().replace('version="1.0"', 'version="1.0" encoding="UTF-16"').encode("utf-16"),
        ),
        # Named .txt but an XML declaration: checked as XML, not waved through as text.
        ("bombe.txt", BILLION_LAUGHS),
    ],
)
def test_xml_with_a_doctype_is_refused_without_expanding_or_fetching_anything(
    client, assistant, physician, mailbox, name, content
):
    client.force_login(assistant)
    _refused(_post(client, physician, mailbox, SimpleUploadedFile(name, content)), "DOCTYPE")


def _pdf(catalog_extra: bytes = b"", page_extra: bytes = b"", *more: bytes) -> bytes:
    """A one-page PDF with extra entries in its catalog and page, and further objects numbered from 4."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R " + catalog_extra + b" >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] " + page_extra + b" >>",
        *more,
    ]
    out = bytearray(b"%PDF-1.7\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for offset in offsets:
        out += f"{offset:010d} 00000 n \n".encode()
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


JS_ACTION = b"<< /Type /Action /S /JavaScript /JS (app.alert\\('signiert'\\);) >>"


@pytest.mark.parametrize(
    "content",
    [
        # Run when opened (/OpenAction), the classic hostile PDF.
        _pdf(b"/OpenAction 4 0 R", b"", JS_ACTION),
        # A document-level script in the /Names tree.
        _pdf(b"/Names << /JavaScript << /Names [(init) 4 0 R] >> >>", b"", JS_ACTION),
        # A link annotation on the page that runs a script when clicked.
        _pdf(b"", b"/Annots [5 0 R]", JS_ACTION, b"<< /Type /Annot /Subtype /Link /Rect [0 0 100 100] /A 4 0 R >>"),
        # A page action that starts a program.
        _pdf(b"", b"/AA << /O << /S /Launch /F (cmd.exe) >> >>"),
    ],
    ids=["open-action", "names-tree", "link-annotation", "launch"],
)
def test_a_pdf_that_runs_code_is_refused(client, assistant, physician, mailbox, content):
    """A QES covers a static document (PDF/A forbids scripts): a PDF that changes what it shows when opened
    would make "what is signed is what was shown" untrue for the recipient."""
    client.force_login(assistant)
    _refused(_post(client, physician, mailbox, SimpleUploadedFile("brief.pdf", content)), "JavaScript")


def test_a_pdf_that_opens_at_its_first_page_is_fine(client, assistant, physician, mailbox):
    client.force_login(assistant)
    content = _pdf(b"/OpenAction [3 0 R /Fit] /PageMode /UseNone")
    response = _post(client, physician, mailbox, SimpleUploadedFile("brief.pdf", content))
    assert response.status_code == 302 and Draft.objects.get().mime_type == "application/pdf"


def test_a_pdf_named_txt_is_checked_and_stored_as_a_pdf(client, assistant, physician, mailbox):
    client.force_login(assistant)
    response = _post(client, physician, mailbox, SimpleUploadedFile("brief.txt", make_pdf("Befund")))
    assert response.status_code == 302
    assert Draft.objects.get().mime_type == "application/pdf"


# --- file names ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("../../etc/passwd.txt", "passwd.txt"),
        ("C:\\Users\\arzt\\brief.txt", "brief.txt"),
        ("/var/lib/kis/export/ 2024 brief.txt", "2024 brief.txt"),
    ],
)
def test_path_separators_in_a_file_name_are_dropped(given, stored):
    assert document_check(LETTER_TEXT, given).filename == stored


def test_a_300_character_file_name_keeps_its_extension():
    checked = document_check(make_pdf(), "Entlassbrief-" + "x" * 300 + ".pdf")
    assert len(checked.filename) <= 255
    assert checked.filename.endswith(".pdf") and checked.filename.startswith("Entlassbrief-")
    text = document_check(LETTER_TEXT, "b" * 300 + ".txt")
    assert len(text.filename) <= 255 and text.filename.endswith(".txt")


def test_control_characters_never_reach_the_file_name_or_its_download(client, assistant, physician, mailbox):
    """The KIS (issue 12) and seeding call document_check directly, without Django's upload sanitising: a line
    break in the name would break the Content-Disposition header of every download."""
    checked = document_check(LETTER_TEXT, "brief\r\nX-Injected: 1\t\x00.txt")
    assert not any(ch in checked.filename for ch in "\r\n\x00")
    assert document_check(LETTER_TEXT, "Brief\u202efdp.txt").filename == "Brieffdp.txt"
    assert document_check(LETTER_TEXT, "Brief\xa0Muster.txt").filename == "Brief\xa0Muster.txt"
    data = DraftData(
        document_type="earztbrief",
        patient_reference="Muster",
        signer=physician,
        mailbox=mailbox,
        subject="Brief",
        recipients=["praxis@praxis-test.kim.telematik-test"],
    )
    draft = draft_create(author=assistant, data=data, document=checked)
    client.force_login(physician)
    response = client.get(reverse("signing:draft-document", args=[draft.pk]), {"download": "1"})
    assert response.status_code == 200
    assert "\n" not in response["Content-Disposition"] and "X-Injected" not in response.headers


def test_a_hostile_file_name_is_downloaded_under_a_safe_header(client, assistant, physician, mailbox):
    client.force_login(assistant)
    name = 'Brief "Müller"; filename=evil.exe.txt'
    response = _post(client, physician, mailbox, SimpleUploadedFile(name, LETTER_TEXT))
    assert response.status_code == 302
    draft = Draft.objects.get()
    download = client.get(reverse("signing:draft-document", args=[draft.pk]), {"download": "1"})
    disposition = download["Content-Disposition"]
    assert disposition.startswith("attachment;")
    # One file name parameter only (quoted or RFC 5987-encoded), never a second one smuggled in.
    assert disposition.count("filename=") + disposition.count("filename*=") == 1
    assert download["Content-Type"].startswith("text/plain")
    assert download["X-Content-Type-Options"] == "nosniff"


def test_short_text_keeps_only_what_the_konnektor_accepts(assistant, physician, mailbox):
    import re

    for filename in ("Brief für Müller (Entlassung) §3 – €.pdf", "€€€", "<script>.txt", "x" * 200 + ".txt", "   "):
        draft = Draft(filename=filename, subject="Brief", pk=7)
        assert re.fullmatch(SHORT_TEXT_OK, short_text_for(draft)), (filename, short_text_for(draft))


# --- the letter ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "recipients",
    [
        "root@localhost",
        "praxis.mueller@gmail.com",
        "praxis@praxis-test.kim.telematik-test\r\nBcc: alle@klinikum.de",
        "praxis@praxis-test.kim.telematik-test, <script>@x.de",
        # Django refuses a NUL in any field before the address check (German too).
        "praxis@praxis-test.kim.telematik-test\x00@evil.de",
    ],
)
def test_recipients_must_be_kim_addresses(client, assistant, physician, mailbox, recipients):
    client.force_login(assistant)
    response = _post(client, physician, mailbox, SimpleUploadedFile("brief.txt", LETTER_TEXT), recipients=recipients)
    _refused(response, "Nullzeichen sind nicht erlaubt." if "\x00" in recipients else "Keine gültige KIM-Adresse")


def test_400_recipients_are_kept_one_each_without_duplicates(client, assistant, physician, mailbox):
    client.force_login(assistant)
    addresses = [f"praxis{n}@praxis-test.kim.telematik-test" for n in range(400)]
    response = _post(
        client,
        physician,
        mailbox,
        SimpleUploadedFile("brief.txt", LETTER_TEXT),
        recipients="\n".join(addresses + addresses[:10]),
    )
    assert response.status_code == 302
    assert Draft.objects.get().recipients == addresses


@pytest.mark.parametrize("field", ["subject", "patient_reference"])
@pytest.mark.parametrize(
    "value", ["Entlassbrief\r\nBcc: alle@klinikum.de", "Entlassbrief\nzweite Zeile", "Brief\x00", "Brief\u2028Bcc: x"]
)
def test_line_breaks_in_subject_or_patient_are_refused(client, assistant, physician, mailbox, field, value):
    """The subject becomes a mail header when the letter is sent; a line break there is header injection."""
    client.force_login(assistant)
    response = _post(client, physician, mailbox, SimpleUploadedFile("brief.txt", LETTER_TEXT), **{field: value})
    assert response.status_code == 422
    assert not Draft.objects.exists()


@pytest.mark.parametrize("field", ["subject", "patient_reference"])
@pytest.mark.parametrize("value", ["Entlassbrief \u202erellüM", "\u2067Muster\u2069, Anna", "Brief\u202d01\u202c"])
def test_direction_overrides_in_subject_or_patient_are_refused(client, assistant, physician, mailbox, field, value):
    """The queue would show the physician "Müller" for a stored "rellüM" (U+202E): another patient or subject
    than the one stored, searched for and sent as the mail's subject."""
    client.force_login(assistant)
    response = _post(client, physician, mailbox, SimpleUploadedFile("brief.txt", LETTER_TEXT), **{field: value})
    assert response.status_code == 422
    assert "Steuerzeichen" in response.content.decode()
    assert not Draft.objects.exists()


def test_hebrew_in_the_patient_field_without_overrides_is_fine(client, assistant, physician, mailbox):
    client.force_login(assistant)
    response = _post(
        client, physician, mailbox, SimpleUploadedFile("brief.txt", LETTER_TEXT), patient_reference="שרה כהן"
    )
    assert response.status_code == 302
    assert Draft.objects.get().patient_reference == "שרה כהן"


def test_a_no_break_space_pasted_into_the_subject_is_fine(client, assistant, physician, mailbox):
    client.force_login(assistant)
    response = _post(
        client, physician, mailbox, SimpleUploadedFile("brief.txt", LETTER_TEXT), subject="Entlassbrief\xa0Muster"
    )
    assert response.status_code == 302 and Draft.objects.get().subject == "Entlassbrief\xa0Muster"


def test_markup_in_every_field_is_shown_as_text(client, assistant, physician, mailbox):
    client.force_login(assistant)
    evil = '<img src=x onerror="alert(1)">'
    response = _post(
        client,
        physician,
        mailbox,
        SimpleUploadedFile(evil + ".xml", LETTER_XML),
        subject="Brief " + evil,
        patient_reference="Muster " + evil,
        body=evil,
    )
    assert response.status_code == 302
    draft = Draft.objects.get()
    client.force_login(physician)
    from signing.services.batch import Selected, batch_create
    from tests.signing.factories import WorkplaceFactory

    def shown_as_text(*urls: str) -> None:
        for url in urls:
            html = client.get(url).content.decode()
            assert "<img src=x" not in html, url
            assert "&lt;img src=x" in html, url

    shown_as_text(reverse("signing:draft-detail", args=[draft.pk]), reverse("signing:queue"), reverse("signing:drafts"))
    batch = batch_create(
        signer=physician,
        workplace=WorkplaceFactory(label=evil),
        selected=[Selected(draft.pk, draft.version, draft.sha256)],
    )
    shown_as_text(reverse("signing:batch", args=[batch.pk]))
    assert "<img src=x" not in client.get(reverse("signing:batches")).content.decode()


def test_a_letter_text_over_the_request_limit_is_refused_in_german_and_not_stored(
    client, assistant, physician, mailbox
):
    client.force_login(assistant)
    response = _post(
        client, physician, mailbox, SimpleUploadedFile("brief.txt", LETTER_TEXT), body="Befund. " * 400_000
    )
    assert not Draft.objects.exists()
    assert response.status_code in (400, 413, 422)
    assert 'lang="de"' in response.content.decode()


def test_a_text_whose_direction_overrides_reorder_what_is_shown_is_refused(client, assistant, physician, mailbox):
    """U+202E and friends make the page show "Dosis 10 mg" for bytes that say "Dosis 01 mg": what is signed
    would not be what was shown."""
    client.force_login(assistant)
    content = "Dosis: \u202e01\u202c mg täglich\n".encode()
    response = _post(client, physician, mailbox, SimpleUploadedFile("brief.txt", content))
    _refused(response, "Schreibrichtung")
    xml = '<?xml version="1.0" encoding="UTF-8"?><brief>Dosis: \u202e01\u202c mg</brief>'.encode()
    _refused(_post(client, physician, mailbox, SimpleUploadedFile("brief.xml", xml)), "Schreibrichtung")
    # Hebrew or Arabic text with its natural direction (no explicit overrides) stays fine.
    response = _post(client, physician, mailbox, SimpleUploadedFile("brief.txt", "Patientin: שרה כהן\n".encode()))
    assert response.status_code == 302
