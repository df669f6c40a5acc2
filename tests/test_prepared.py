"""kimportal.prepared: a query compiled once answers like the ORM for every value and list length."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import Value
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from kimportal.prepared import PreparedDelete, PreparedQuery, PreparedUpdate


def _names(user_id: int, ids: list[int]):
    return get_user_model().objects.filter(pk__in=ids).exclude(pk=user_id).order_by("pk").values_list("pk", "username")


@pytest.mark.django_db
def test_prepared_rows_equal_the_orms_for_other_values_and_lengths():
    users = [get_user_model().objects.create_user(f"u{i}") for i in range(4)]
    ids = [u.pk for u in users]
    prepared = PreparedQuery(_names)
    for user_id, chosen in [(ids[0], ids), (ids[1], ids[:2]), (ids[2], ids[1:]), (ids[3], [ids[0]]), (ids[0], [])]:
        assert prepared.rows(user_id, chosen) == list(_names(user_id, chosen))


@pytest.mark.django_db
def test_a_shape_is_compiled_once_and_an_empty_list_asks_nothing():
    built = []

    def build(user_id: int, ids: list[int]):
        built.append(len(ids))
        return _names(user_id, ids)

    prepared = PreparedQuery(build)
    prepared.rows(1, [1, 2])
    prepared.rows(5, [7, 8])
    prepared.rows(5, [7, 8, 9])
    prepared.rows(5, [7, 8, 9, 10])  # lists are IN sets, padded to a power of two: one shape for 3 and 4
    assert built == [2, 4]
    with CaptureQueriesContext(connection) as queries:
        assert prepared.rows(1, []) == []
        assert prepared.rows(2, []) == []
    assert len(queries) == 0
    assert built == [2, 4, 0]


@pytest.mark.django_db
def test_a_value_the_orm_does_not_pass_through_is_refused():
    # The ORM turns `username=<int>` into the string "…": the stand-in cannot be found among the parameters.
    prepared = PreparedQuery(lambda value: get_user_model().objects.filter(username=value).values_list("pk"))
    with pytest.raises(ValueError, match="not among the compiled parameters"):
        prepared.rows(3)


@pytest.mark.django_db
def test_datetimes_bind_as_the_orm_binds_them():
    joined = timezone.now() - timedelta(days=2)
    users = [get_user_model().objects.create_user(f"d{i}", date_joined=joined + timedelta(days=i)) for i in range(3)]

    def since(moment: datetime):
        return get_user_model().objects.filter(date_joined__gte=moment).order_by("pk").values_list("pk", "date_joined")

    prepared = PreparedQuery(since)
    for moment in (joined, joined + timedelta(hours=12), timezone.now() + timedelta(days=1)):
        assert prepared.rows(moment) == list(since(moment))
    assert [pk for pk, _ in prepared.rows(joined)] == [u.pk for u in users]
    with pytest.raises(TypeError, match="aware"):
        prepared.rows(datetime(2020, 1, 1))  # a naive datetime is refused


def _rename(user_id: int, name: str, moment: datetime):
    users = get_user_model().objects.filter(pk=user_id, is_active=True)
    return users, {"first_name": Value(name), "last_login": moment}


@pytest.mark.django_db
def test_a_prepared_update_returns_the_rows_it_changed_as_the_orm_reads_them():
    if not PreparedUpdate.supported():
        pytest.skip("the database returns no rows from an UPDATE")
    first, second = (get_user_model().objects.create_user(name) for name in ("a", "b"))
    get_user_model().objects.filter(pk=second.pk).update(is_active=False)
    prepared = PreparedUpdate(_rename, returning=("id", "first_name", "last_login", "is_active"))
    moment = timezone.now()
    with CaptureQueriesContext(connection) as queries:
        changed = prepared.rows(first.pk, "Anna", moment)
    assert len(queries) == 1 and queries[0]["sql"].startswith("UPDATE")
    assert changed == [(first.pk, "Anna", moment, True)]
    assert (
        get_user_model().objects.values_list("pk", "first_name", "last_login", "is_active").get(pk=first.pk)
        == (changed[0])
    )
    # A row the filter does not match is neither changed nor returned.
    assert prepared.rows(second.pk, "Bert", moment) == []
    assert get_user_model().objects.get(pk=second.pk).first_name == ""


def _inactive(family: str):
    return get_user_model().objects.filter(last_name=family, is_active=False)


@pytest.mark.django_db
def test_a_prepared_delete_returns_the_rows_it_removed_and_only_those():
    if not PreparedDelete.supported():
        pytest.skip("the database returns no rows from a DELETE")
    kept = get_user_model().objects.create_user("x-kept", last_name="X")
    gone = get_user_model().objects.create_user("x-gone", first_name="Gina", last_name="X")
    get_user_model().objects.create_user("y-other", last_name="Y", is_active=False)
    get_user_model().objects.filter(pk=gone.pk).update(is_active=False)
    prepared = PreparedDelete(_inactive, returning=("id", "first_name", "is_active"))
    with CaptureQueriesContext(connection) as queries:
        removed = prepared.rows("X")
    assert len(queries) == 1 and queries[0]["sql"].startswith("DELETE")
    assert removed == [(gone.pk, "Gina", False)]
    assert set(get_user_model().objects.values_list("username", flat=True)) == {"x-kept", "y-other"}
    assert prepared.rows("X") == [] and get_user_model().objects.filter(pk=kept.pk).exists()
