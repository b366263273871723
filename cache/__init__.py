"""Prediction cache: a bounded in-process L1 in front of Redis, keyed by a canonical digest of the request.

See docs/cache.md. Typical use in the gateway:

    key = cache_key(key_parts_from_request(request, decoded, tenant=t, version=v))
    hit = await cache.get(key)
    if hit is None:
        response, shared = await flights.do(key, call_function)
        if not shared:
            cache.put(key, response_bytes, ttl_seconds, compute_seconds)
"""

# A folder at the top of the repository (the user's layout), but a subpackage of edgeinfer: under
# another name its modules would load twice, with two copies of their state.
if __name__ != "edgeinfer.cache":
    raise ImportError(f"import edgeinfer.cache, not {__name__}: cache/ is part of the edgeinfer package")


from edgeinfer.cache.breaker import BreakerState, CircuitBreaker
from edgeinfer.cache.entry import Entry, decode_entry, encode_entry
from edgeinfer.cache.key import (
    KEY_VERSION,
    NON_SEMANTIC_PARAMETERS,
    CacheKeyParts,
    InputPart,
    OutputPart,
    ParamType,
    ParamValue,
    cache_key,
    key_parts_from_request,
    uncacheable_reason,
)
from edgeinfer.cache.l1 import L1Cache
from edgeinfer.cache.prediction_cache import CacheHit, PredictionCache
from edgeinfer.cache.redis_store import RedisStore, redact_url
from edgeinfer.cache.singleflight import SingleFlight
from edgeinfer.cache.stats import CacheStats, Counters

__all__ = [
    "KEY_VERSION",
    "NON_SEMANTIC_PARAMETERS",
    "BreakerState",
    "CacheHit",
    "CacheKeyParts",
    "CacheStats",
    "CircuitBreaker",
    "Counters",
    "Entry",
    "InputPart",
    "L1Cache",
    "OutputPart",
    "ParamType",
    "ParamValue",
    "PredictionCache",
    "RedisStore",
    "SingleFlight",
    "cache_key",
    "decode_entry",
    "encode_entry",
    "key_parts_from_request",
    "redact_url",
    "uncacheable_reason",
]
