"""konnektor.batches: calls within the limits, too-big documents answered with 4283 without a call."""

from __future__ import annotations

from konnektor import KonnektorConfig, SignItem, batches

MB = 2**20


def item(n: int, size: int = 10, *, pades: bool = False) -> SignItem:
    return SignItem(f"r{n}", b"x" * size, "application/pdf" if pades else "text/plain", f"Dokument {n}", pades)


def config(**limits: int) -> KonnektorConfig:
    return KonnektorConfig(base_url="http://127.0.0.1:1", **limits)


def test_250_documents_in_calls_of_the_configured_count() -> None:
    plan = batches([item(n) for n in range(250)], config(max_requests_per_call=50))
    assert [len(call) for call in plan.calls] == [50] * 5
    assert [i.request_id for call in plan.calls for i in call] == [f"r{n}" for n in range(250)]
    assert plan.rejected == []

    plan = batches([item(n) for n in range(250)], config(max_requests_per_call=250))
    assert [len(call) for call in plan.calls] == [250]


def test_a_document_over_the_limit_is_rejected_with_4283_and_the_rest_still_goes() -> None:
    items = [item(1, 5 * MB), item(2, 26 * MB), item(3, 1 * MB)]
    plan = batches(items, config())
    assert [[i.request_id for i in call] for call in plan.calls] == [["r1", "r3"]]
    assert len(plan.rejected) == 1
    rejected = plan.rejected[0]
    assert (rejected.request_id, rejected.ok, rejected.code) == ("r2", False, 4283)
    assert "zu groß" in rejected.text
    # Exactly the limit is allowed.
    assert batches([item(4, 25 * MB)], config()).rejected == []


def test_the_bytes_per_call_start_a_new_call() -> None:
    items = [item(n, 20 * MB) for n in range(30)]
    plan = batches(items, config())
    # 12 × 20 MB = 240 MB fit under 250 MB; the 13th would not.
    assert [len(call) for call in plan.calls] == [12, 12, 6]
    assert all(sum(len(i.content) for i in call) <= 250 * MB for call in plan.calls)


def test_pades_and_cades_never_share_a_call() -> None:
    items = [item(1, pades=True), item(2), item(3, pades=True), item(4)]
    plan = batches(items, config())
    assert [[i.request_id for i in call] for call in plan.calls] == [["r1", "r3"], ["r2", "r4"]]


def test_nothing_to_sign() -> None:
    plan = batches([], config())
    assert plan.calls == [] and plan.rejected == []
