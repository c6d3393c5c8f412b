"""Per-client upload limits: a flood meets 429 before its body is read, while other farmers still get 201.
No client was ever refused before: 0 × 429 in every run of the tester's floods."""

from __future__ import annotations

from fastapi.testclient import TestClient

from pestid.serving.app import create_app
from tests.security.test_inputs import _stored
from tests.serving.conftest import jpeg, make_settings


def _send(client: TestClient, seed: int, device: str | None = None):
    headers = {"Device-Key": device} if device else {}
    return client.post("/v1/identify", files=[("photos", ("a.jpg", jpeg(seed), "image/jpeg"))], headers=headers)


def test_a_device_and_an_address_meet_their_limits_and_others_do_not(tiny_model, tmp_path):
    settings = make_settings(tiny_model, tmp_path / "data", upload_rate_per_device="3/minute",
                             upload_rate_per_address="5/minute")  # fmt: skip
    app = create_app(settings)
    with TestClient(app, client=("10.0.0.1", 40000)) as flooder:
        assert [_send(flooder, k, "phone-aaaaaaaa").status_code for k in range(4)] == [201, 201, 201, 429]
        refused = _send(flooder, 9, "phone-aaaaaaaa")
        assert refused.json()["code"] == "too_many_uploads" and 0 < int(refused.headers["retry-after"]) <= 60
        # another phone behind the same address: the address's looser limit still holds the flood
        assert [_send(flooder, 10 + k, "phone-bbbbbbbb").status_code for k in range(3)] == [201, 201, 429]
        assert _send(flooder, 20).status_code == 429  # no device key: the address limit alone
        farmer = TestClient(app, client=("10.0.0.2", 40000))
        assert _send(farmer, 30, "phone-cccccccc").status_code == 201  # someone else is served
        assert _stored(flooder)[0] == 6


def test_one_client_holds_at_most_its_share_of_the_decode_slots():
    """Five 62 MP HEICs per request on 4 connections used to take every decode slot: a farmer's single photo
    waited 5.3 s (p50 23 ms without them). A client now holds at most its share; others decode meanwhile."""
    import threading

    from pestid.serving.ratelimit import FairSlots

    slots = FairSlots(total=2, per_client=1)
    inside, release = threading.Event(), threading.Event()
    order: list[str] = []

    def hold(client: str, started: threading.Event | None = None) -> None:
        with slots(client):
            order.append(client)
            if started:
                started.set()
            release.wait(5)

    first = threading.Thread(target=hold, args=("abuser", inside))
    first.start()
    inside.wait(5)
    second = threading.Thread(target=hold, args=("abuser",))  # its own share is taken: it waits
    second.start()
    farmer = threading.Thread(target=hold, args=("farmer",))  # a slot is free for someone else
    farmer.start()
    deadline = threading.Event()
    for _ in range(100):
        if order == ["abuser", "farmer"]:
            break
        deadline.wait(0.02)
    assert order == ["abuser", "farmer"]
    release.set()
    for t in (first, second, farmer):
        t.join(5)
    assert order == ["abuser", "farmer", "abuser"] and not slots.held


def test_uploads_in_flight_per_address_are_capped():
    from pestid.serving.ratelimit import InFlight

    flights = InFlight(per_address=2)
    with flights.enter("a") as one, flights.enter("a") as two, flights.enter("a") as three, flights.enter("b") as other:
        assert (one, two, three, other) == (True, True, False, True)
    with flights.enter("a") as again:
        assert again and not flights.now["b"]


def test_a_freed_slot_goes_to_the_waiting_farmer_not_back_to_the_same_request():
    """A request with five huge photos releases its slot after each and asks again at once: with a plain semaphore
    it took the slot back before the farmer's waiting thread woke (measured: the farmer's p50 15× slower)."""
    import threading

    from pestid.serving.ratelimit import FairSlots

    slots = FairSlots(total=1, per_client=1)
    holding, go, order = threading.Event(), threading.Event(), []

    def abuser() -> None:
        for k in range(3):  # photo after photo, no pause between them
            with slots("abuser"):
                order.append(f"abuser{k}")
                if k == 0:
                    holding.set()
                    go.wait(5)

    def farmer() -> None:
        with slots("farmer"):
            order.append("farmer")

    first = threading.Thread(target=abuser)
    first.start()
    holding.wait(5)
    second = threading.Thread(target=farmer)
    second.start()
    for _ in range(100):  # the farmer is waiting for the slot
        if slots.waiting:
            break
        threading.Event().wait(0.01)
    go.set()
    first.join(5)
    second.join(5)
    assert order[:2] == ["abuser0", "farmer"], order
