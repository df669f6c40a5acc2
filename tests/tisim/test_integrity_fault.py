from __future__ import annotations

import email
from email.message import EmailMessage
from email.policy import default

from tests.tisim.support import ALICE, BOB, message, pop3_login, send
from tisim.cm import CMSimulator

NOTICE = (
    "Beim Empfang dieser KIM-Nachricht wurde eine Sicherheitsverletzung erkannt. Dies kann eine technisches "
    "Ursache haben oder auf eine missbräuchliche Nutzung des KIM-Dienstes hinweisen. Zu Ihrem Schutz wurde der "
    "Inhalt dieser Nachricht durch diesen Text ausgetauscht. Bitte kontaktieren Sie den Absender und/oder Ihren "
    "Administrator. Die entschlüsselte Nachricht wurde in diese Fehlernachricht eingebettet und kann, abhängig vom "
    "verwendeten E-Mail-Client, in eigener Verantwortung eingesehen bzw. verarbeitet werden."
)


def test_tampered_message_arrives_as_the_integrity_notice(cm: CMSimulator) -> None:
    original = message(
        subject="=?utf-8?q?Entlassbrief_M=C3=BCller?=",
        extra="Cc: carol@klinik-b.kim.telematik\r\nX-KIM-Dienstkennung: Arztbrief;VHitG-Versand;V1.2\r\n"
        "X-Tisim-Fault: integrity\r\n",
        body="Vertraulicher Inhalt\r\n",
    )
    send(cm, ALICE, [BOB], original)

    conn = pop3_login(cm, BOB)
    raw = b"\r\n".join(conn.retr(1)[1]) + b"\r\n"
    conn.quit()
    notice = email.message_from_bytes(raw, policy=default)
    assert isinstance(notice, EmailMessage)

    assert notice["From"] == ALICE
    assert notice["To"] == BOB
    assert notice["Cc"] == "carol@klinik-b.kim.telematik"
    assert notice["Subject"] == "Entlassbrief Müller"
    assert notice["Message-ID"] == "<test-=?utf-8?q?Entlassbrief_M=C3=BCller?=@praxis-a.kim.telematik>"
    assert notice["Date"] == "Thu, 06 Oct 2022 11:27:22 +0200"
    assert notice.get_all("X-KIM-DecryptionResult") == ["00"]
    assert notice.get_all("X-KIM-IntegrityCheckResult") == ["08"]
    assert notice.get_all("X-KIM-Dienstkennung") == ["Arztbrief;VHitG-Versand;V1.2"]
    assert notice["Return-Path"] == f"<{ALICE}>"
    assert "X-Tisim-Fault" not in notice
    assert notice.get_content_type() == "multipart/mixed"

    text, embedded = notice.iter_parts()
    assert text.get_content_type() == "text/plain"
    assert text.get_content_charset() == "utf-8"
    content = text.get_content()
    assert NOTICE in content
    assert "[Integritätsprüfung] [ID 08] Die Nachricht wurde nach der Verschlüsselung manipuliert." in content

    assert embedded.get_content_type() == "message/rfc822"
    inner = embedded.get_content()
    assert inner["Subject"] == "Entlassbrief Müller"
    assert "X-Tisim-Fault" not in inner
    assert inner.get_content().strip() == "Vertraulicher Inhalt"
    assert b"X-Tisim-Fault" not in raw


def test_the_fault_header_is_case_insensitive_and_other_mail_is_untouched(cm: CMSimulator) -> None:
    send(cm, ALICE, [BOB], message(subject="a", extra="x-tisim-fault: Integrity\r\n"))
    send(cm, ALICE, [BOB], message(subject="b"))
    first, second = (email.message_from_bytes(cm.maildrop_read(BOB, u), policy=default) for u in cm.maildrop_uidls(BOB))
    assert first["X-KIM-IntegrityCheckResult"] == "08"
    assert second["X-KIM-IntegrityCheckResult"] == "01"
    assert second.get_content_type() == "text/plain"
