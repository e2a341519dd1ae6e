"""Which entries an Invalidate targets. Only ever entries of the requesting tenant."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable

from services.cache.entries import Entry, EntryTable
from services.cache.keys import RequestKeys
from services.cache.model import (
    CacheRequest,
    ExactTarget,
    InvalidateTarget,
    NamespaceTarget,
    TagTarget,
    TenantTarget,
    validate_tag,
)
from shared.errors import InvalidRequest, NotFound

_NAMESPACE_KEY = re.compile(r"[0-9a-f]{64}")


def resolve_target(
    table: EntryTable,
    tenant_id: str,
    target: InvalidateTarget,
    keys_of: Callable[[CacheRequest], RequestKeys],
) -> list[Entry]:
    """The entries to remove. Namespaces that hold nothing of the tenant are NOT_FOUND (a
    wrong key or tenant is likelier than a deliberate no-op); an exact request or a tag that
    matches nothing removes nothing, since the caller's wish already holds."""
    if isinstance(target, ExactTarget):
        keys = keys_of(dataclasses.replace(target.request, tenant_id=tenant_id))
        entry = table.by_exact.get(keys.exact)
        return [] if entry is None else [entry]
    if isinstance(target, NamespaceTarget):
        return _namespace(table, tenant_id, target.namespace_key)
    if isinstance(target, TenantTarget):
        entries = table.in_tenant(tenant_id)
        if not entries:
            raise NotFound(f"tenant {tenant_id!r} has no cache entries to invalidate")
        return entries
    if isinstance(target, TagTarget):
        validate_tag(target.tag)
        return table.tagged(tenant_id, target.tag)
    raise InvalidRequest("one of exact, namespace_key, tenant_wide or tag must be set")


def _namespace(table: EntryTable, tenant_id: str, namespace_key: str) -> list[Entry]:
    if not _NAMESPACE_KEY.fullmatch(namespace_key):
        raise InvalidRequest(
            f"namespace_key {namespace_key[:80]!r} is not a namespace key (64 hex digits, as "
            "Store and Lookup return it)"
        )
    namespace = table.namespaces.get(namespace_key)
    # Another tenant's namespace is reported exactly like a missing one, so that its
    # existence does not leak across tenants.
    if namespace is None or namespace.tenant_id != tenant_id:
        raise NotFound(f"namespace {namespace_key} holds no entries of tenant {tenant_id!r}")
    return table.in_namespace(namespace_key)
