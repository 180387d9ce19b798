"""The caller's key as the API reads it from the authorizer's context, and what the authorizer answers for a key."""

from __future__ import annotations

from functions.dal.keys import StoredKey
from functions.handlers.http import authorizer_context
from functions.logic.keys import hash_key, identity_context

CONTEXT = {"tenant": "acme", "keyId": "k1", "scope": "read", "rateLimit": 5, "burstLimit": 10}


def test_the_context_is_read_from_payload_1_and_payload_2_events() -> None:
    assert authorizer_context({"requestContext": {"authorizer": CONTEXT}}) == CONTEXT
    assert authorizer_context({"requestContext": {"authorizer": {"lambda": CONTEXT}}}) == CONTEXT
    assert authorizer_context({"requestContext": {"authorizer": None}}) == {}
    assert authorizer_context({}) == {}


class Keys:
    def __init__(self, *keys: tuple[str, StoredKey]) -> None:
        self.by = {hash_key(value): key for value, key in keys}
        self.asked: list[str] = []

    def by_hash(self, key_hash: str) -> StoredKey | None:
        self.asked.append(key_hash)
        return self.by.get(key_hash)


def test_a_known_key_gets_its_identity_and_the_defaults_it_lacks() -> None:
    keys = Keys(
        ("value-a", StoredKey("a", "acme", "full", "a", "2026-01-01T00:00:00Z")),
        ("value-b", StoredKey("b", "acme", "read", "b", "2026-01-01T00:00:00Z", rate_limit=3)),
        ("value-c", StoredKey("c", "acme", "full", "c", "2026-01-01T00:00:00Z", rate_limit=3, burst_limit=30)),
    )
    assert identity_context(keys, "value-a", 100, 200) == {
        "tenant": "acme",
        "keyId": "a",
        "scope": "full",
        "rateLimit": 100,
        "burstLimit": 200,
    }
    # Its own rate without a burst: twice the rate; its own burst: as given
    assert identity_context(keys, "value-b", 100, 200)["burstLimit"] == 6
    assert identity_context(keys, "value-c", 100, 200)["burstLimit"] == 30
    # Only the hash is ever looked up
    assert "value-a" not in keys.asked and hash_key("value-a") in keys.asked


def test_unknown_revoked_missing_or_absurd_keys_get_no_tenant() -> None:
    revoked = StoredKey("r", "acme", "full", "r", "2026-01-01T00:00:00Z", revoked_at="2026-01-02T00:00:00Z")
    keys = Keys(("revoked", revoked))
    for value in ("unknown", "revoked", None, "", "x" * 10_000):
        assert identity_context(keys, value, 100, 200)["tenant"] == ""
    assert len(keys.asked) == 2  # neither a missing key nor an absurdly long one is looked up
