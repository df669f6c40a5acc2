"""Sample KIM mails shared by test modules (fixtures, not tests)."""

from __future__ import annotations

# A discharge letter as a practice sends it: text part plus a PDF with an RFC 2231 filename.
MAIL_WITH_PDF = (
    b"From: Praxis <praxis@praxis-test.kim.telematik-test>\r\n"
    b"To: station@klinikum-test.kim.telematik-test\r\n"
    b"Subject: =?utf-8?q?Entlassbrief_M=C3=BCller?=\r\n"
    b"X-KIM-Dienstkennung: Arztbrief;VHitG-Versand;V1.2\r\n"
    b"X-KIM-DecryptionResult: 00\r\n"
    b"X-KIM-IntegrityCheckResult: 01\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n'
    b"--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nAnbei der Brief.\r\n"
    b"--b1\r\nContent-Type: application/pdf\r\n"
    b"Content-Disposition: attachment; filename*=utf-8''Entlassbrief%20M%C3%BCller.pdf\r\n"
    b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQKJSVFT0YK\r\n--b1--\r\n"
)
