"""The demo's letters to sign can travel on: every addressee is in the demo directory with a valid certificate
(else the outbox's pre-flight would keep the signed letters as drafts)."""

from __future__ import annotations

from signing.management.demo_letters import demo_letters
from tisim.vzd.generate import Generator


def test_every_demo_recipient_has_a_directory_entry_with_a_valid_certificate():
    generator = Generator()
    by_address = {mail: entry for entry in generator.fixed_entries() for mail, _version in entry.mails}
    recipients = {address for letter in demo_letters() for address in letter.recipients}
    assert recipients, "the demo seeds letters with addressees"
    missing = sorted(recipients - set(by_address))
    assert not missing, missing
    for address in recipients:
        assert by_address[address].certs, address
