"""Validators accept a value only whole: a regex's "$" also matches before a final line break, so "ABC\n" passed
checks written as ^…$ with .match() and reached a database column, an LDAP filter or a mail header."""

from __future__ import annotations

import pytest

from directory.ldapfilter import eq
from mailbox.models.kimresults import SecurityState, assess_security
from mailbox.services.compose import address_problem
from signing.api.errors import ApiError
from signing.api.validation import document_id_check


def test_a_kis_document_id_with_a_line_break_is_refused():
    assert document_id_check("Brief-2026.11:17") == "Brief-2026.11:17"
    with pytest.raises(ApiError):
        document_id_check("Brief-2026\n")


def test_a_kim_address_with_a_line_break_is_no_kim_address():
    assert address_problem("praxis@praxis-mueller.kim.telematik-test") == ""
    assert "keine KIM-Adresse" in address_problem("praxis@praxis-mueller.kim.telematik-test\n")


def test_a_check_result_with_a_line_break_is_not_read_as_a_failure_code():
    assert assess_security(["08"], []).state == SecurityState.FAILED
    # Not a well-formed code: unclear, with the value named, rather than counted as the CM's "08".
    odd = assess_security(["08\n"], [])
    assert odd.state != SecurityState.FAILED


def test_an_attribute_name_with_a_line_break_is_refused_in_a_filter():
    assert eq("mail", "a") == "(mail=a)"
    with pytest.raises(ValueError):
        eq("mail\n", "a")
