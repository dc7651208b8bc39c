"""One rate limiter in Redis, shared by every worker process and thread.

Two continuously refilled buckets per model, requests per minute and tokens per minute, as OpenAI
describes its limits. A request costs one request and its estimated prompt tokens plus its
max_completion_tokens (what OpenAI counts against the limit when the request arrives); unused
output tokens are given back when the reply says how many were used. The buckets start from the
configured limits and follow the provider's `x-ratelimit-limit-*` and `x-ratelimit-remaining-*`
headers. After a 429, every worker holds back until the time the provider named.

Each operation is one Lua script, so it is atomic across processes; time is Redis's own clock.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import redis

_STATE = """
local key = KEYS[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rcap = tonumber(redis.call('HGET', key, 'rcap')) or tonumber(ARGV[1])
local tcap = tonumber(redis.call('HGET', key, 'tcap')) or tonumber(ARGV[2])
local rlev = tonumber(redis.call('HGET', key, 'rlev')) or rcap
local tlev = tonumber(redis.call('HGET', key, 'tlev')) or tcap
local stamp = tonumber(redis.call('HGET', key, 'stamp')) or now
local hold = tonumber(redis.call('HGET', key, 'hold')) or 0
local elapsed = math.max(0, now - stamp)
rlev = math.min(rcap, rlev + elapsed * rcap / 60000)
tlev = math.min(tcap, tlev + elapsed * tcap / 60000)
local function save()
  redis.call('HSET', key, 'rcap', rcap, 'tcap', tcap, 'rlev', rlev, 'tlev', tlev, 'stamp', now, 'hold', hold)
  redis.call('PEXPIRE', key, 3600000)
end
"""

ACQUIRE = (
    _STATE
    + """
local tokens = tonumber(ARGV[3])
if tokens > tcap then save() return -1 end
if hold > now then save() return hold - now end
if rlev >= 1 and tlev >= tokens then
  rlev = rlev - 1
  tlev = tlev - tokens
  save()
  return 0
end
local wait = math.max((1 - rlev) * 60000 / rcap, (tokens - tlev) * 60000 / tcap)
save()
return math.max(1, math.ceil(wait))
"""
)

OBSERVE = (
    _STATE
    + """
if ARGV[3] ~= '' then rcap = tonumber(ARGV[3]) end
if ARGV[4] ~= '' then tcap = tonumber(ARGV[4]) end
if ARGV[5] ~= '' then rlev = math.min(rlev, tonumber(ARGV[5])) end
if ARGV[6] ~= '' then tlev = math.min(tlev, tonumber(ARGV[6])) end
rlev = math.min(rlev, rcap)
tlev = math.min(tlev, tcap)
save()
return 0
"""
)

HOLD = (
    _STATE
    + """
hold = math.max(hold, now + tonumber(ARGV[3]))
save()
return hold - now
"""
)

REFUND = (
    _STATE
    + """
tlev = math.min(tcap, tlev + tonumber(ARGV[3]))
save()
return 0
"""
)


class TooLargeForLimit(Exception):
    """The request needs more tokens than the whole per-minute limit: it can never be sent."""


def _number(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name, "")
    try:
        return str(int(float(value))) if value != "" else ""
    except ValueError:
        return ""


class RateLimiter:
    def __init__(self, client: redis.Redis, rpm: int, tpm: int, prefix: str = "markq:limiter") -> None:
        self.client = client
        self.defaults = (rpm, tpm)
        self.prefix = prefix
        self._acquire = client.register_script(ACQUIRE)
        self._observe = client.register_script(OBSERVE)
        self._hold = client.register_script(HOLD)
        self._refund = client.register_script(REFUND)

    def _key(self, model: str) -> str:
        return f"{self.prefix}:{model}"

    def acquire(self, model: str, tokens: int) -> float:
        """Take one request and `tokens` now and return 0, or take nothing and return the seconds
        to wait before the capacity is there."""
        waited = int(self._acquire(keys=[self._key(model)], args=[*self.defaults, tokens]))
        if waited < 0:
            limit = self.limits(model)[1]
            raise TooLargeForLimit(
                f"the request needs {tokens} tokens, more than the {limit} tokens per minute allowed"
            )
        return waited / 1000

    def observe(self, model: str, headers: Mapping[str, str]) -> None:
        """Follow the provider's view of the limits from its x-ratelimit-* headers."""
        lower = {k.lower(): v for k, v in headers.items()}
        args = [
            _number(lower, f"x-ratelimit-{kind}-{what}")
            for kind in ("limit", "remaining")
            for what in ("requests", "tokens")
        ]
        if any(args):
            self._observe(keys=[self._key(model)], args=[*self.defaults, *args])

    def hold(self, model: str, seconds: float) -> None:
        """Nobody calls `model` for `seconds` (the provider's retry-after)."""
        self._hold(keys=[self._key(model)], args=[*self.defaults, max(1, math.ceil(seconds * 1000))])

    def refund(self, model: str, tokens: int) -> None:
        if tokens > 0:
            self._refund(keys=[self._key(model)], args=[*self.defaults, tokens])

    def limits(self, model: str) -> tuple[int, int]:
        rcap, tcap = self.client.hmget(self._key(model), "rcap", "tcap")
        return (int(float(rcap)) if rcap else self.defaults[0], int(float(tcap)) if tcap else self.defaults[1])
