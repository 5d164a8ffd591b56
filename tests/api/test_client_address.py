"""Who a client is to the rate limits (interview.api.limits.client_address): the entry the
outermost trusted proxy wrote, never one the client wrote itself; and the event-stream slots."""

from __future__ import annotations

import pytest

from interview.api.limits import StreamSlots, TooManyStreams, client_address


def scope(peer: str = "10.0.1.5", **headers: str | list[str]) -> dict[str, object]:
    raw: list[tuple[bytes, bytes]] = []
    for name, value in headers.items():
        for line in [value] if isinstance(value, str) else value:
            raw.append((name.replace("_", "-").lower().encode(), line.encode("latin-1")))
    return {"type": "http", "client": (peer, 4711), "headers": raw}


def test_without_trusted_proxies_the_connection_is_the_client():
    # hops 0: the headers are uvicorn's business (FORWARDED_ALLOW_IPS); the scope's client is it.
    found = client_address(scope("203.0.113.7", x_forwarded_for="6.6.6.6"), "x-forwarded-for", 0)
    assert found == "203.0.113.7"
    assert client_address(scope("203.0.113.7", forwarded="for=6.6.6.6"), "forwarded", 0) == (
        "203.0.113.7"
    )


@pytest.mark.parametrize(
    ("header", "hops", "expected"),
    [
        ("198.51.100.9", 1, "198.51.100.9"),
        # The client wrote 6.6.6.6 itself; the proxy appended the address it saw.
        ("6.6.6.6, 198.51.100.9", 1, "198.51.100.9"),
        ("6.6.6.6,198.51.100.9", 1, "198.51.100.9"),
        # Two proxies: the outer one wrote the client's address, the inner one the outer's.
        ("6.6.6.6, 198.51.100.9, 10.0.1.5", 2, "198.51.100.9"),
        ("198.51.100.9:5123", 1, "198.51.100.9"),
        ("[2001:db8:1:2:3:4:5:6]:5123", 1, "2001:db8:1:2::/64"),
        ("2001:db8:1:2::99", 1, "2001:db8:1:2::/64"),
        ("::ffff:198.51.100.9", 1, "198.51.100.9"),
        # Fewer entries than trusted proxies, or no address where the proxy writes: the
        # connection's address.
        ("198.51.100.9", 2, "10.0.1.5"),
        ("6.6.6.6, unknown", 1, "10.0.1.5"),
        ("", 1, "10.0.1.5"),
    ],
)
def test_x_forwarded_for_counts_from_the_end(header: str, hops: int, expected: str):
    assert client_address(scope(x_forwarded_for=header), "x-forwarded-for", hops) == expected


def test_header_lines_are_read_in_order():
    # HAProxy adds a line of its own after the client's.
    lines = ["6.6.6.6, 7.7.7.7", "198.51.100.9"]
    assert client_address(scope(x_forwarded_for=lines), "x-forwarded-for", 1) == "198.51.100.9"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        # API Gateway (HTTP API) appends an element with the address it saw.
        ("for=198.51.100.9;host=api.example.com;proto=https", "198.51.100.9"),
        ("for=6.6.6.6, for=198.51.100.9;by=10.0.0.1;proto=https", "198.51.100.9"),
        ('for="[2001:db8::17]:4711";proto=https', "2001:db8::/64"),
        ('FOR="198.51.100.9"', "198.51.100.9"),
        # A client's open quote does not swallow the element the proxy appended.
        ('for="6.6.6.6, for=198.51.100.9;proto=https', "198.51.100.9"),
        # An element without for=, or an obfuscated one: the connection's address.
        ("proto=https", "10.0.1.5"),
        ("for=_hidden", "10.0.1.5"),
    ],
)
def test_forwarded_takes_the_for_of_the_last_element(header: str, expected: str):
    assert client_address(scope(forwarded=header), "forwarded", 1) == expected


def test_the_forwarded_mode_ignores_x_forwarded_for():
    # Behind API Gateway and an ALB, X-Forwarded-For holds the VPC link's address (or the
    # client's inventions): shared by every client, it must not be the key.
    found = client_address(
        scope(x_forwarded_for="6.6.6.6, 10.0.2.9", forwarded="for=198.51.100.9"), "forwarded", 1
    )
    assert found == "198.51.100.9"


def test_a_name_that_is_no_address_becomes_a_short_digest():
    key = client_address(scope("testclient"), "x-forwarded-for", 0)
    assert key.startswith("name:") and len(key) == 37
    assert key == client_address(scope("testclient"), "x-forwarded-for", 0)
    long_junk = client_address(scope("x" * 5000), "x-forwarded-for", 0)
    assert len(long_junk) == 37


def test_a_session_has_at_most_its_slots_and_a_closed_one_is_free_again():
    slots = StreamSlots(per_session=2, stream_seconds=25)
    first = slots.open("s1")
    slots.open("s1")
    with pytest.raises(TooManyStreams) as refused:
        slots.open("s1")
    assert refused.value.limit == 2
    assert 24 <= refused.value.retry_after <= 25
    slots.open("s2")  # another session's are its own
    first()
    first()  # closing twice frees one slot, not two
    slots.open("s1")
    with pytest.raises(TooManyStreams):
        slots.open("s1")
    assert slots.count("s1") == 2
