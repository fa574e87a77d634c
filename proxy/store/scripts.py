"""Lua scripts: every security-relevant state change happens in one of these.

Each is registered once per app with ``register_script`` (EVALSHA, reloaded on
NOSCRIPT) and receives every key in ``KEYS``; none builds a key itself.
"""

from __future__ import annotations

REDEEM_CODE = """
-- KEYS[1] = grant:{grant_id}
-- ARGV[1] = sha256 of the presented code secret
-- ARGV[2] = now (epoch seconds)
-- ARGV[3] = replay tolerance in seconds
-- ARGV[4] = sha256 of the first refresh token's secret
-- ARGV[5] = TTL of the grant once redeemed (seconds)
-- Returns: "OK" (code spent, refresh token set), "NOT_FOUND", "EXPIRED",
--   "REPLAY_TOLERATED" (spent less than ARGV[3] seconds ago: refused, grant
--   kept; a tolerance of 0 tolerates nothing),
--   "REPLAYED" (spent earlier: refused and the grant is deleted).
-- Edge cases: two concurrent redemptions: exactly one sees code_used_at unset.
local f = redis.call('HMGET', KEYS[1], 'code_hash', 'code_exp', 'code_used_at')
if not f[1] or f[1] ~= ARGV[1] then
  return 'NOT_FOUND'
end
local now = tonumber(ARGV[2])
if f[3] then
  if now - tonumber(f[3]) < tonumber(ARGV[3]) then
    return 'REPLAY_TOLERATED'
  end
  redis.call('DEL', KEYS[1])
  return 'REPLAYED'
end
if now > tonumber(f[2]) then
  return 'EXPIRED'
end
redis.call('HSET', KEYS[1], 'code_used_at', ARGV[2], 'rt_hash', ARGV[4],
  'gen', '1', 'rotated_at', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 'OK'
"""

ROTATE_REFRESH = """
-- KEYS[1] = grant:{grant_id}
-- ARGV[1] = the generation the caller read (compare-and-set)
-- ARGV[2] = sha256 of the new refresh token's secret
-- ARGV[3] = now (epoch seconds)
-- ARGV[4] = the new token response, sealed under the presented token's secret
-- ARGV[5] = TTL of the grant (seconds)
-- ARGV[6] = new sealed upstream tokens, or "" to keep them
-- Returns: "OK", "NOT_FOUND" (revoked or expired), "CONFLICT" (another
--   request rotated first: re-read and answer from the grace window).
local gen = redis.call('HGET', KEYS[1], 'gen')
if not gen then
  return 'NOT_FOUND'
end
if gen ~= ARGV[1] then
  return 'CONFLICT'
end
local current = redis.call('HGET', KEYS[1], 'rt_hash')
-- Older generations, as 16-hex-digit prefixes of their hashes (the last 16),
-- so a token older than the previous one is still recognised as reused.
local previous = redis.call('HGET', KEYS[1], 'rt_prev_hash')
if previous then
  local old = redis.call('HGET', KEYS[1], 'rt_old') or ''
  old = old .. string.sub(previous, 1, 16) .. ' '
  if string.len(old) > 17 * 16 then
    old = string.sub(old, string.len(old) - 17 * 16 + 1)
  end
  redis.call('HSET', KEYS[1], 'rt_old', old)
end
redis.call('HSET', KEYS[1], 'rt_prev_hash', current, 'rt_hash', ARGV[2],
  'gen', tostring(tonumber(gen) + 1), 'rotated_at', ARGV[3], 'pending', ARGV[4],
  'lease_until', '0')
if ARGV[6] ~= '' then
  redis.call('HSET', KEYS[1], 'upstream', ARGV[6])
end
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 'OK'
"""

TAKE_TXN = """
-- KEYS[1] = txn:{proxy_state}
-- ARGV[1] = hash of the browser binding presented at the callback
-- Returns: the stored "<binding hash>|<transaction JSON>" the first time the
--   right browser comes back; "MISMATCH" (nothing consumed) for another
--   browser; false when unknown or already used.
-- The key is left as a "used" tombstone until its TTL ends, so the consent
-- form that created it cannot create it again (SET NX fails): the form and
-- the upstream state are each usable once. A foreign browser cannot spoil the
-- transaction for the user's own browser, since a mismatch consumes nothing.
local value = redis.call('GET', KEYS[1])
if not value or value == 'used' then
  return false
end
if string.sub(value, 1, string.len(ARGV[1]) + 1) ~= ARGV[1] .. '|' then
  return 'MISMATCH'
end
redis.call('SET', KEYS[1], 'used', 'KEEPTTL')
return value
"""

BEGIN_REFRESH = """
-- KEYS[1] = grant:{grant_id}
-- ARGV[1] = sha256 of the presented refresh token's secret
-- ARGV[2] = now (epoch seconds)
-- ARGV[3] = lease length in seconds
-- ARGV[4] = the client_id presenting the token
-- Returns: the grant as a flat HGETALL list, plus "lease" then "1" when the
--   caller now holds the short lease that lets exactly one request refresh
--   the upstream tokens of this grant. Empty list: no such grant.
-- Edge cases: the lease goes only to the grant's own client presenting the
--   current token; anything else (an old token, another client) is answered
--   from the returned data by the caller, and never holds the grant up.
--   The caller releases the lease (RELEASE_LEASE) if it then refuses.
local data = redis.call('HGETALL', KEYS[1])
if #data == 0 then
  return data
end
local f = redis.call('HMGET', KEYS[1], 'rt_hash', 'lease_until', 'client_id')
local lease = tonumber(f[2] or '0')
if f[1] == ARGV[1] and f[3] == ARGV[4] and lease < tonumber(ARGV[2]) then
  local lease_end = tonumber(ARGV[2]) + tonumber(ARGV[3])
  redis.call('HSET', KEYS[1], 'lease_until', tostring(lease_end))
  table.insert(data, 'lease')
  table.insert(data, '1')
end
return data
"""

RELEASE_LEASE = """
-- KEYS[1] = grant:{grant_id}
-- Returns: 1 if the grant exists and its refresh lease is now free, else 0.
-- Never creates the key (a revoked grant stays revoked).
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
redis.call('HSET', KEYS[1], 'lease_until', '0')
return 1
"""
