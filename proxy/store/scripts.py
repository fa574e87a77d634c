"""Lua scripts: every security-relevant state change happens in one of these.

Each is registered once per app with ``register_script`` (EVALSHA, reloaded on
NOSCRIPT) and receives every key in ``KEYS``; none builds a key itself.

A grant is one JSON string (see ``records.Grant``), read and rewritten whole
with Redis' bundled ``cjson``: one small string costs about half the memory of
a hash whose long fields force Redis off its compact listpack encoding.
"""

from __future__ import annotations

REDEEM_CODE = """
-- KEYS[1] = grant:{grant_id}
-- ARGV[1] = sha256 of the presented code secret
-- ARGV[2] = now (epoch seconds)
-- ARGV[3] = replay tolerance in seconds
-- ARGV[4] = sha256 of the first refresh token's secret, or "" for a client
--           without the refresh_token grant
-- ARGV[5] = TTL of the grant once redeemed (seconds)
-- Returns: "OK" (code spent, refresh token set, last_used_at = now),
--   "NOT_FOUND", "EXPIRED",
--   "REPLAY_TOLERATED" (spent less than ARGV[3] seconds ago: refused, grant
--   kept; a tolerance of 0 tolerates nothing),
--   "REPLAYED" (spent earlier: refused and the grant is deleted).
-- Edge cases: two concurrent redemptions: exactly one sees code_used_at unset.
local raw = redis.call('GET', KEYS[1])
if not raw then
  return 'NOT_FOUND'
end
local g = cjson.decode(raw)
if g.code_hash ~= ARGV[1] then
  return 'NOT_FOUND'
end
local now = tonumber(ARGV[2])
if type(g.code_used_at) == 'number' then
  if now - g.code_used_at < tonumber(ARGV[3]) then
    return 'REPLAY_TOLERATED'
  end
  redis.call('DEL', KEYS[1])
  return 'REPLAYED'
end
if now > g.code_exp then
  return 'EXPIRED'
end
g.code_used_at = now
g.last_used_at = now
g.gen = 1
g.rotated_at = now
if ARGV[4] ~= '' then
  g.rt_hash = ARGV[4]
end
redis.call('SET', KEYS[1], cjson.encode(g), 'EX', ARGV[5])
return 'OK'
"""

ROTATE_REFRESH = """
-- KEYS[1] = grant:{grant_id}
-- ARGV[1] = the generation the caller read (compare-and-set)
-- ARGV[2] = sha256 of the new refresh token's secret
-- ARGV[3] = now (epoch seconds)
-- ARGV[4] = the new refresh token, sealed under the presented token's secret
-- ARGV[5] = TTL of the grant (seconds)
-- ARGV[6] = new sealed upstream tokens, or "" to keep them
-- ARGV[7] = the identity claims the upstream refresh re-read (a JSON string,
--   opaque here), or "" / absent to keep the stored ones (J66)
-- Returns: "OK", "NOT_FOUND" (revoked, expired, or its code never redeemed),
--   "CONFLICT" (another request rotated first: re-read and answer from the
--   grace window).
-- Edge cases: the previous hash moves to rt_prev_hash; the one before it
--   joins rt_old (12-hex-digit prefixes, the last 8), so a token older than
--   the previous one is still recognised as reused. The lease is released.
--   last_used_at becomes ARGV[3] (the grant's last use, for the account page
--   and the admin CLI).
local raw = redis.call('GET', KEYS[1])
if not raw then
  return 'NOT_FOUND'
end
local g = cjson.decode(raw)
if type(g.gen) ~= 'number' then
  return 'NOT_FOUND'
end
if tostring(g.gen) ~= ARGV[1] then
  return 'CONFLICT'
end
if type(g.rt_prev_hash) == 'string' then
  local old = (type(g.rt_old) == 'string' and g.rt_old or '')
    .. string.sub(g.rt_prev_hash, 1, 12) .. ' '
  if string.len(old) > 13 * 8 then
    old = string.sub(old, string.len(old) - 13 * 8 + 1)
  end
  g.rt_old = old
end
g.rt_prev_hash = g.rt_hash
g.rt_hash = ARGV[2]
g.gen = g.gen + 1
g.rotated_at = tonumber(ARGV[3])
g.last_used_at = g.rotated_at
g.pending = ARGV[4]
g.lease_until = nil
g.lease_holder = nil
if ARGV[6] ~= '' then
  g.upstream = ARGV[6]
end
if ARGV[7] and ARGV[7] ~= '' then
  g.claims = ARGV[7]
end
redis.call('SET', KEYS[1], cjson.encode(g), 'EX', ARGV[5])
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
-- ARGV[5] = a random token naming this lease's holder
-- Returns: {grant JSON, 1} when the caller now holds the short lease that
--   lets exactly one request refresh the upstream tokens of this grant,
--   {grant JSON, 0} otherwise, and an empty list when there is no grant.
-- Edge cases: the lease goes only to the grant's own client presenting the
--   current token; anything else (an old token, another client) is answered
--   from the returned data by the caller, and never holds the grant up.
--   The caller releases the lease (RELEASE_LEASE) if it then refuses.
local raw = redis.call('GET', KEYS[1])
if not raw then
  return {}
end
local g = cjson.decode(raw)
local lease = tonumber(g.lease_until) or 0
local now = tonumber(ARGV[2])
if g.rt_hash == ARGV[1] and g.client_id == ARGV[4] and lease < now then
  g.lease_until = now + tonumber(ARGV[3])
  g.lease_holder = ARGV[5]
  raw = cjson.encode(g)
  redis.call('SET', KEYS[1], raw, 'KEEPTTL')
  return {raw, 1}
end
return {raw, 0}
"""

RELEASE_LEASE = """
-- KEYS[1] = grant:{grant_id}
-- ARGV[1] = the holder token given to BEGIN_REFRESH
-- Returns: 1 if this holder's lease is now free, else 0 (no grant, or the
--   lease lapsed and another request holds it now: that one is left alone).
-- Never creates the key (a revoked grant stays revoked). Both lease fields
--   are removed, not zeroed: a record that never had a lease reads exactly
--   as before, so a refused refresh leaves no trace.
local raw = redis.call('GET', KEYS[1])
if not raw then
  return 0
end
local g = cjson.decode(raw)
if g.lease_holder ~= ARGV[1] then
  return 0
end
g.lease_until = nil
g.lease_holder = nil
redis.call('SET', KEYS[1], cjson.encode(g), 'KEEPTTL')
return 1
"""

CHARGE_RATE = """
-- A GCRA token bucket (the "theoretical arrival time" form: one number a key).
-- KEYS[1] = rate:{...} (the bucket)
-- ARGV[1] = emission interval in ms (period / count)
-- ARGV[2] = burst: how many requests may arrive at once
-- ARGV[3] = "charge"; "peek" to only look (nothing is written); "refund" to
--   give back one earlier charge (a request that did not count after all)
-- Returns: 0 when the request is allowed (and charged), otherwise the ms to
--   wait before the next one would be. "refund" returns 0.
-- Edge cases: the clock is Redis' own (TIME), the same for every worker and
--   instance; a refused request is not charged; a refund never takes the
--   bucket below empty.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then
  tat = now
end
if ARGV[3] == 'refund' then
  local back = tat - interval
  if back <= now then
    redis.call('DEL', KEYS[1])
  else
    redis.call('SET', KEYS[1], back, 'PX', back - now)
  end
  return 0
end
local new_tat = tat + interval
local allowed_at = new_tat - tonumber(ARGV[2]) * interval
if allowed_at > now then
  return allowed_at - now
end
if ARGV[3] == 'charge' then
  redis.call('SET', KEYS[1], new_tat, 'PX', new_tat - now)
end
return 0
"""

RECORD_AUTH_FAILURE = """
-- KEYS[1] = authfail:{<ip> <client>} (the failure count)
-- KEYS[2] = authblock:{<ip> <client>} (present while back-off is in force)
-- ARGV[1] = failures allowed before back-off
-- ARGV[2] = longest back-off (seconds)
-- ARGV[3] = how long a failure is remembered without back-off (seconds)
-- Returns: the back-off now in force (seconds; 0 while under the allowance).
-- Edge cases: the count survives while failures keep coming; each failure
--   past the allowance doubles the wait (1, 2, 4 ... seconds, capped).
local count = redis.call('INCR', KEYS[1])
local over = count - tonumber(ARGV[1])
if over <= 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[3])
  return 0
end
local backoff = math.min(2 ^ (over - 1), tonumber(ARGV[2]))
-- Remember the count for the back-off plus the quiet window after it.
redis.call('EXPIRE', KEYS[1], math.ceil(backoff) + tonumber(ARGV[3]))
redis.call('SET', KEYS[2], '1', 'EX', math.ceil(backoff))
return backoff
"""

RESERVE_CLIENT = """
-- KEYS[1] = clients (ZSET of DCR client ids, scored by their unused expiry)
-- ARGV[1] = now (unix seconds)
-- ARGV[2] = MAX_CLIENTS
-- ARGV[3] = the new client id
-- ARGV[4] = its unused expiry (unix seconds)
-- Returns: 1 if the client may be stored (and is now counted), else 0.
-- Why a script: count-then-add from several workers would let a flood of
--   concurrent registrations overshoot the cap by as many as are in flight.
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[4], ARGV[3])
return 1
"""
ACQUIRE_STREAM = """
-- A lease on one of a grant's stream slots.
-- KEYS[1] = streams:{grant_id} (ZSET: lease id -> end of lease, ms)
-- ARGV[1] = lease id, ARGV[2] = lease length (ms), ARGV[3] = slots per grant,
--   ARGV[4..] = leases of this grant's ended streams, not yet released
-- Returns: 1 when the lease was taken, 0 when every slot is held.
-- Edge cases: the ended leases and leases past their end (a killed worker's)
--   are removed first; the clock is Redis' own (TIME), the same for every
--   worker.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[2])
for i = 4, #ARGV do
  redis.call('ZREM', KEYS[1], ARGV[i])
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
redis.call('PEXPIRE', KEYS[1], lease)
return 1
"""

RENEW_STREAMS = """
-- Extend the leases of streams still open.
-- KEYS[1] = streams:{grant_id}
-- ARGV[1] = lease length (ms), ARGV[2..] = lease ids
-- Returns: how many of the leases were still there (XX: never re-adds one
--   that ended or was trimmed).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[1])
local renewed = 0
for i = 2, #ARGV do
  renewed = renewed + redis.call('ZADD', KEYS[1], 'XX', 'CH', now + lease, ARGV[i])
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('PEXPIRE', KEYS[1], lease)
end
return renewed
"""


WRITE_DOCUMENT = """
-- KEYS[1] = doc:{document_id}
-- KEYS[2] = docfail:{document_id} (same hash tag: one slot)
-- ARGV[1] = the validated document record (JSON)
-- ARGV[2] = its TTL (seconds)
-- Returns: 1.
-- Why a script, not MULTI: a Redis Cluster pipeline runs no MULTI before
--   redis-py 6, and a script is atomic on every topology and client alike.
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('DEL', KEYS[2])
return 1
"""

RELEASE_LOCK = """
-- KEYS[1] = doclock:{document_id}, or mcpsession:{session_hash}
-- ARGV[1] = the holder's token (a session's: its owner's hash)
-- Returns: 1 if the lock was this holder's and is now deleted, otherwise 0.
-- Edge cases: a lock that lapsed and was taken by another worker is left alone.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

APPEND_TRACES = """
-- KEYS[1..n] = trace:{trN}:{trace_id}, all of one bucket (one hash slot)
-- ARGV[1] = TTL (seconds)
-- ARGV[2] = how many steps a trace keeps (the newest)
-- ARGV[3..] = for each key in turn: its steps, one JSON line each (JSON never
--   holds a raw newline), joined by newlines: one argument per trace, as the
--   flush's client-side cost is per argument
-- Returns: how many steps were appended.
-- Edge cases: a key's RPUSH, LTRIM and EXPIRE land together, so a trace never
--   lives without its TTL and never holds more than ARGV[2] steps. The caller
--   sends at most ARGV[2] steps per key (what LTRIM would keep), so no key's
--   steps overflow unpack's stack.
local keep = -tonumber(ARGV[2])
local appended = 0
for i = 1, #KEYS do
  local steps = {}
  for step in string.gmatch(ARGV[i + 2], '[^\\n]+') do
    steps[#steps + 1] = step
  end
  if #steps > 0 then
    redis.call('RPUSH', KEYS[i], unpack(steps))
    redis.call('LTRIM', KEYS[i], keep, -1)
    redis.call('EXPIRE', KEYS[i], ARGV[1])
    appended = appended + #steps
  end
end
return appended
"""

INDEX_TRACE = """
-- KEYS[1] = traces:recent or traces:{kind}:{subject_hash}
-- ARGV[1] = TTL (seconds)
-- ARGV[2] = how many trace ids to keep (the newest)
-- ARGV[3] = now (epoch ms): the score of a trace id seen for the first time
-- ARGV[4] = the trace ids (one flush's worth), separated by spaces
-- Returns: how many ids were new to this index.
-- Edge cases: ZADD NX keeps the first-seen time of a known id; ids older
--   than the TTL and the oldest beyond ARGV[2] are trimmed in the same call,
--   only when something was added (a known id changes nothing).
local added = 0
for id in string.gmatch(ARGV[4], '%S+') do
  added = added + redis.call('ZADD', KEYS[1], 'NX', ARGV[3], id)
end
if added > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf',
    '(' .. (tonumber(ARGV[3]) - 1000 * tonumber(ARGV[1])))
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -tonumber(ARGV[2]) - 1)
  redis.call('EXPIRE', KEYS[1], ARGV[1])
end
return added
"""

INDEX_GRANT = """
-- KEYS[1] = grants:user:{sub_hash} or grants:client:{client_hash}
-- ARGV[1] = the grant id
-- ARGV[2] = the grant's absolute expiry (epoch seconds): the member's score
-- ARGV[3] = now (epoch seconds)
-- Returns: the number of members left.
-- Edge cases: members past their absolute expiry are trimmed; the key expires
--   with its latest member (EXPIREAT its score), never before a live grant,
--   even when the grant lifetime setting was longer for older grants.
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[3])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if #last == 0 then
  return 0
end
redis.call('EXPIREAT', KEYS[1], last[2])
return redis.call('ZCARD', KEYS[1])
"""

RESEAL_UPSTREAM = """
-- KEYS[1] = grant:{grant_id}
-- ARGV[1] = the sealed upstream tokens the caller read (opened with a
--           previous PROXY_SECRET_KEY)
-- ARGV[2] = the same tokens sealed under the current key
-- Returns: 1 if the grant still held ARGV[1] and now holds ARGV[2], else 0
--   (gone, or a refresh replaced the tokens meanwhile: nothing to do).
-- Edge cases: the TTL is kept (KEEPTTL); no other field changes.
local raw = redis.call('GET', KEYS[1])
if not raw then
  return 0
end
local g = cjson.decode(raw)
if g.upstream ~= ARGV[1] then
  return 0
end
g.upstream = ARGV[2]
redis.call('SET', KEYS[1], cjson.encode(g), 'KEEPTTL')
return 1
"""

REPLACE_SIGNING_KEYS = """
-- KEYS[1] = keys
-- ARGV[1] = the signing keys document the caller read
-- ARGV[2] = the document to store in its place
-- Returns: 1 if replaced, 0 if the record is gone or changed since it was
--   read (another rotation or reseal won: read again).
-- Edge cases: no TTL, like the record itself. A compare-and-set, so a
--   rotation, a retirement and a worker's reseal never overwrite each other.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2])
return 1
"""
