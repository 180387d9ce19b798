"""Tenant keys in DynamoDB (moto): the key commands, the authorizer's answer, scopes, ``GET /me`` and per-key rate
limits (``429 RATE_LIMITED`` with ``Retry-After``)."""

from __future__ import annotations

import pytest

from functions.dal.key_rates import DynamoWindowCounts
from functions.dal.keys import DynamoKeyStore
from functions.handlers import authorizer
from functions.logic import keys
from local.gateway import authorizer_event
from tests.integration.harness import TENANT_A, Service, ok_job


@pytest.fixture
def store(service: Service) -> DynamoKeyStore:
    return DynamoKeyStore(service.dynamodb, service.settings.keys_table)


def use(service: Service, created: keys.CreatedKey) -> str:
    """Let the harness call the API with this key; its key id."""
    service.key_values[created.key.key_id] = created.value
    return created.key.key_id


def test_a_created_key_is_stored_hashed_and_shown_once(service: Service, store: DynamoKeyStore) -> None:
    # When a key is created
    created = keys.create_key(store, "acme", scope="read", name="dashboard", rate_limit=5)

    # Then its value has the key id in it and is nowhere in the table, which holds its hash
    assert created.value.startswith(f"jk_{created.key.key_id}_")
    items = service.dynamodb.scan(TableName=service.settings.keys_table)["Items"]
    assert created.value not in str(items)
    assert {item["pk"]["S"] for item in items} >= {
        f"hash#{keys.hash_key(created.value)}",
        f"id#{created.key.key_id}",
    }
    # And the listing shows it, by tenant
    listed = keys.list_keys(store, "acme")
    assert [(k.key_id, k.scope, k.name, k.rate_limit) for k in listed] == [(created.key.key_id, "read", "dashboard", 5)]
    assert keys.list_keys(store, "nobody") == []


def test_the_authorizer_answers_the_keys_identity_and_an_empty_tenant_for_an_unknown_key(
    service: Service, store: DynamoKeyStore
) -> None:
    created = keys.create_key(store, "acme", scope="read", rate_limit=4)

    answer = authorizer.handler(authorizer_event(created.value), None)
    assert answer == {
        "isAuthorized": True,
        "context": {"tenant": "acme", "keyId": created.key.key_id, "scope": "read", "rateLimit": 4, "burstLimit": 8},
    }
    unknown = authorizer.handler(authorizer_event("not-a-key-at-all"), None)
    assert unknown["isAuthorized"] is True and unknown["context"]["tenant"] == ""


def test_a_revoked_key_is_forbidden_once_the_cache_expires(service: Service, store: DynamoKeyStore) -> None:
    # Given a working key
    key_id = use(service, keys.create_key(store, TENANT_A))
    assert service.api("GET", "/stats", key=key_id).status == 200

    # When it is revoked (and the authorizer's cache has expired)
    revoked = keys.revoke_key(store, key_id)
    authorizer.reset()

    # Then it is refused in the API's error shape
    assert revoked.revoked_at is not None
    status, body, _ = service.api("GET", "/stats", key=key_id)
    assert (status, body["code"]) == (403, "FORBIDDEN")
    assert {k.key_id: k.revoked_at for k in keys.list_keys(store, TENANT_A)}[key_id] == revoked.revoked_at


def test_rotation_gives_a_new_value_and_the_old_one_stops_working(service: Service, store: DynamoKeyStore) -> None:
    created = keys.create_key(store, TENANT_A, scope="read")
    rotated = keys.rotate_key(store, created.key.key_id)
    authorizer.reset()

    assert rotated.value != created.value
    assert rotated.key.key_id == created.key.key_id
    assert authorizer.authorize(created.value)["tenant"] == ""
    identity = authorizer.authorize(rotated.value)
    assert (identity["tenant"], identity["keyId"], identity["scope"]) == (TENANT_A, created.key.key_id, "read")


def test_an_imported_key_keeps_its_value_and_cannot_be_imported_twice(service: Service, store: DynamoKeyStore) -> None:
    value = "an-old-api-gateway-key-value-0123456789"
    keys.create_key(store, "legacy", value=value)
    assert authorizer.authorize(value)["tenant"] == "legacy"
    with pytest.raises(keys.InvalidKeyCommand, match="already stored"):
        keys.create_key(store, "legacy", value=value)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s: keys.create_key(s, "bad tenant!"), "tenant"),
        (lambda s: keys.create_key(s, "acme", scope="write"), "scope"),
        (lambda s: keys.create_key(s, "acme", rate_limit=0), "rate limit"),
        (lambda s: keys.create_key(s, "acme", rate_limit=10, burst_limit=5), "burst"),
        (lambda s: keys.create_key(s, "acme", value="short"), "imported"),
        (lambda s: keys.rotate_key(s, "nope"), "no key"),
        (lambda s: keys.revoke_key(s, "nope"), "no key"),
    ],
)
def test_bad_key_commands_say_why(service: Service, store: DynamoKeyStore, call: object, message: str) -> None:
    with pytest.raises(keys.InvalidKeyCommand, match=message):
        call(store)  # type: ignore[operator]


# --- scopes ---


def test_a_read_key_reads_but_every_write_is_forbidden(service: Service, store: DynamoKeyStore) -> None:
    # Given a job of tenant A and a read key of tenant A
    job = service.create_job(ok_job())
    reader = use(service, keys.create_key(store, TENANT_A, scope="read"))

    # Then the read key sees the job, the stats and the types
    assert service.api("GET", f"/jobs/{job['id']}", key=reader).body["id"] == job["id"]
    assert service.api("GET", "/stats", key=reader).status == 200
    assert service.api("GET", "/jobs", key=reader).status == 200

    # And every write is 403 FORBIDDEN in the API's shape, changing nothing
    for method, path, body in [
        ("POST", "/jobs", ok_job()),
        ("DELETE", f"/jobs/{job['id']}", None),
        ("POST", f"/jobs/{job['id']}/retry", None),
        ("POST", "/types/message/pause", None),
        ("POST", "/uploads", {"contentType": "image/png", "size": 10}),
    ]:
        status, error, _ = service.api(method, path, body, key=reader)
        assert (status, error["code"]) == (403, "FORBIDDEN"), (method, path, error)
        assert "read" in error["error"]
    assert service.job(job["id"])["status"] == job["status"]


def test_me_describes_the_callers_key(service: Service, store: DynamoKeyStore) -> None:
    created = keys.create_key(store, TENANT_A, scope="read", rate_limit=3, burst_limit=9)
    reader = use(service, created)

    status, body, _ = service.api("GET", "/me", key=reader)

    assert status == 200
    assert body == {"tenant": TENANT_A, "keyId": created.key.key_id, "scope": "read", "rateLimit": 3, "burstLimit": 9}
    assert service.api("GET", "/me").body["scope"] == "full"
    assert service.api("GET", "/me", key=None).status == 403


# --- rate limits ---


def test_a_key_over_its_rate_limit_is_429_rate_limited_with_retry_after(
    service: Service, store: DynamoKeyStore
) -> None:
    # Given a key allowed 1 request/s with a burst of 3 (3 requests per 3 s window)
    limited = use(service, keys.create_key(store, TENANT_A, rate_limit=1, burst_limit=3))

    # When it sends 5 requests at once
    answers = [service.api("GET", "/stats", key=limited) for _ in range(5)]

    # Then at most 3 (fewer if a window ended between them) are served, and the rest are 429 RATE_LIMITED
    served = [a for a in answers if a.status == 200]
    refused = [a for a in answers if a.status == 429]
    assert len(served) + len(refused) == 5 and 1 <= len(refused) <= 4
    for answer in refused:
        assert answer.body["code"] == "RATE_LIMITED"
        assert answer.body["details"]["retryAfterSeconds"] == int(answer.headers["Retry-After"])
        assert 1 <= int(answer.headers["Retry-After"]) <= 3
    # And another key of the same tenant is not affected
    assert service.api("GET", "/stats").status == 200


def test_window_counts_add_up_and_return_the_total(service: Service) -> None:
    counts = DynamoWindowCounts(service.dynamodb, service.settings.limits_table)
    assert counts.add("key#k#1000#1", 7, 2_000_000_000) == 7
    assert counts.add("key#k#1000#1", 5, 2_000_000_000) == 12
    assert counts.add("key#k#1000#2", 1, 2_000_000_000) == 1
    item = service.dynamodb.get_item(TableName=service.settings.limits_table, Key={"pk": {"S": "key#k#1000#1"}})
    assert item["Item"]["expiresAt"]["N"] == "2000000000"
