"""The Lua scripts of the Redis store (`redis`): each runs atomically on the server.

Key names are built from the prefix inside the scripts (no Cluster: see `redis`). Every
script checks the type of each key it reads before reading it: a key of the store's that
holds another type (or an epoch that is not a number, a lease without an expiry) is deleted
and named in the reply, which is always ``{result, dropped keys}``, so the client logs it
once; every counter a script increments is reset if it holds something that is not a
number. So a tampered or damaged key costs at most a miss, never a script that fails for good.

Segments (`segments`): a probation entry expires (and so may be evicted under
``volatile-lru``); a protected or pinned entry and its alias are persistent, so Redis never
evicts them. ``hot`` and ``pin`` (sorted sets, score = last use in ms) list them, ``seg``
(hash) holds their bytes, and ``due`` (sorted set, score = deadline in ms) holds the
protected entries' deadlines, which the sweep enforces since Redis no longer does.
"""

from __future__ import annotations

#: Probation entries of a cache that keeps results (TTL 0) still expire, after this long,
#: so that ``volatile-lru`` may evict them (about ten years, in ms).
KEEP_MS = 315_360_000_000

# Shared functions; every script that uses them starts with this text.
_LIB = (
    f"local KEEP_MS = {KEEP_MS}\n"
    + """local SEGMENT = {['1'] = 'hot', ['2'] = 'pin'}

local DROPPED = {}

-- delete a key that holds what the store never writes there, and say so in the reply
local function drop(key, what)
  redis.call('DEL', key)
  DROPPED[#DROPPED + 1] = key .. ' (' .. what .. ')'
end

-- true if `key` holds a `kind`; a key of another type is dropped (then false, like none)
local function ensure(key, kind)
  local found = redis.call('TYPE', key).ok
  if found == kind then return true end
  if found ~= 'none' then drop(key, 'a ' .. found .. ' where the store keeps a ' .. kind) end
  return false
end

-- the segments' bookkeeping keys and the counters, as the store writes them
local function sane(p)
  for _, name in ipairs({'hot', 'pin', 'due'}) do ensure(p .. name, 'zset') end
  ensure(p .. 'seg', 'hash')
  ensure(p .. 'stats', 'hash')
end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- the order of use: Redis' clock in microseconds (scripts run one at a time, so no two tie)
local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

local function incr(key, field, by)
  local held = redis.call('HGET', key, field)
  if held and not string.match(held, '^%-?%d+$') then redis.call('HDEL', key, field) end
  redis.call('HINCRBY', key, field, by)
end

local function size_of(p, key)
  return tonumber(redis.call('HGET', p .. key, 'z')) or redis.call('HSTRLEN', p .. key, 'b')
end

local function alias_of(p, key)
  local r = redis.call('HGET', p .. key, 'r')
  if r and r ~= '' and ensure(p .. r, 'string') and redis.call('GET', p .. r) == key then return p .. r end
  return nil
end

-- probation: the entry and its alias expire at its deadline (or after KEEP_MS), so Redis may evict them
local function expiring(p, key)
  local deadline = tonumber(redis.call('HGET', p .. key, 'e'))
  local alias = alias_of(p, key)
  for _, k in ipairs({p .. key, alias}) do
    if deadline then redis.call('PEXPIREAT', k, deadline) else redis.call('PEXPIRE', k, KEEP_MS) end
  end
end

-- protected or pinned: no expiry, so Redis never evicts them
local function lasting(p, key)
  redis.call('PERSIST', p .. key)
  local alias = alias_of(p, key)
  if alias then redis.call('PERSIST', alias) end
end

local function recount(p)
  for g, name in pairs(SEGMENT) do
    local total = 0
    for _, key in ipairs(redis.call('ZRANGE', p .. name, 0, -1)) do
      if ensure(p .. key, 'hash') and redis.call('HGET', p .. key, 'g') == g then
        total = total + size_of(p, key)
      else
        redis.call('ZREM', p .. name, key)
        redis.call('ZREM', p .. 'due', key)
      end
    end
    redis.call('HSET', p .. 'seg', name, total)
  end
end

-- out of its segment's bookkeeping (the caller makes it expiring, or deletes it)
local function unlist(p, key)
  local name = SEGMENT[redis.call('HGET', p .. key, 'g') or '']
  if not name then return end
  if redis.call('ZREM', p .. name, key) == 1 then incr(p .. 'seg', name, -size_of(p, key)) end
  redis.call('ZREM', p .. 'due', key)
  redis.call('HDEL', p .. key, 'g')
end

-- into segment g at `score` (its last use); a protected entry keeps its deadline
local function enlist(p, key, g, score, now)
  local name = SEGMENT[g]
  local deadline = redis.call('HGET', p .. key, 'e')
  if not deadline then  -- stored by an older version: its deadline is its expiry
    local ttl = redis.call('PTTL', p .. key)
    deadline = ttl > 0 and string.format('%.0f', now + ttl) or ''
    redis.call('HSET', p .. key, 'e', deadline)
  end
  redis.call('HSET', p .. key, 'g', g)
  if redis.call('ZADD', p .. name, score, key) == 1 then incr(p .. 'seg', name, size_of(p, key)) end
  if g == '1' and tonumber(deadline) then redis.call('ZADD', p .. 'due', deadline, key) end
  lasting(p, key)
end

local function held(p, name) return tonumber(redis.call('HGET', p .. 'seg', name)) or 0 end

-- the least recently used member of a segment whose bookkeeping is sound, or nil
local function oldest(p, g)
  local name = SEGMENT[g]
  for _ = 1, 2 do
    local key = redis.call('ZRANGE', p .. name, 0, 0)[1]
    if not key then return nil end
    if ensure(p .. key, 'hash') and redis.call('HGET', p .. key, 'g') == g then return key end
    recount(p)  -- a member that is gone or changed: the totals are recounted without it
  end
  return redis.call('ZRANGE', p .. name, 0, 0)[1]
end

-- protected over its share (cap < 0: no budget): least recently used back to probation
local function rebalance(p, cap)
  while cap >= 0 and held(p, 'hot') > cap do
    local key = oldest(p, '1')
    if not key then return end
    unlist(p, key)
    expiring(p, key)
  end
end

-- pin `key`, unpinning the least recently used pins while the pinned share would overflow
-- (they become protected, living `ttl` ms from now); too large on its own: protected
local function pin(p, key, cap, ttl, now)
  local g = redis.call('HGET', p .. key, 'g')
  if g == '2' then
    redis.call('ZADD', p .. 'pin', now_us(), key)
    return
  end
  local size = size_of(p, key)
  if cap >= 0 and size > cap then
    if g ~= '1' then enlist(p, key, '1', now_us(), now) end
    return
  end
  while cap >= 0 and held(p, 'pin') + size > cap do
    local old = oldest(p, '2')
    if not old then break end
    local score = redis.call('ZSCORE', p .. 'pin', old)
    unlist(p, old)
    redis.call('HSET', p .. old, 'e', ttl > 0 and string.format('%.0f', now + ttl) or '')
    enlist(p, old, '1', score, now)
  end
  unlist(p, key)
  redis.call('HSET', p .. key, 'e', '')
  enlist(p, key, '2', now_us(), now)
end

-- delete a value with its stream entry, alias and segment bookkeeping
local function discard(p, key)
  local k = p .. key
  if not ensure(k, 'hash') then return end
  unlist(p, key)
  local row = redis.call('HMGET', k, 'q', 'n', 'r')
  redis.call('DEL', k)
  if row[1] and row[2] and ensure(p .. 'x:' .. row[2], 'stream') then
    redis.call('XDEL', p .. 'x:' .. row[2], row[1] .. '-0')
  end
  if row[3] and row[3] ~= '' and ensure(p .. row[3], 'string') and redis.call('GET', p .. row[3]) == key then
    redis.call('DEL', p .. row[3])
  end
end
"""
)

# KEYS: value, stream[, alias]
# ARGV: prefix, blob, signature, width, height, alpha, phash, ttl ms (0: kept), rows kept, key,
#       alias name, namespace, owner, pinned (1/0), bytes beyond the value key's own (its alias,
#       stream entry), protected cap, pinned cap (-1: none). An entry's size `z` is what Redis
#       says the value key takes, plus those bytes.
PUT = (
    _LIB
    + """
local p, key = ARGV[1], ARGV[10]
sane(p)
local now = now_ms()
local t = redis.call('TIME')
local seq = tonumber(t[1]) * 1000000 + tonumber(t[2])
ensure(p .. 'seq', 'string')
local last = tonumber(redis.call('GET', p .. 'seq')) or 0
if last >= seq then seq = last + 1 end
ensure(KEYS[2], 'stream')
local tail = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)[1]
if tail then
  local top = tonumber(string.match(tail[1], '^(%d+)'))
  if top >= seq then seq = top + 1 end
end
local id = string.format('%.0f', seq)
redis.call('SET', p .. 'seq', id)
local kept = nil
if ensure(KEYS[1], 'hash') then
  local old = redis.call('HMGET', KEYS[1], 'q', 'g')
  if old[1] then redis.call('XDEL', KEYS[2], old[1] .. '-0') end
  if SEGMENT[old[2] or ''] then kept = old[2] end  -- a re-put keeps the segment it earned
  unlist(p, key)
end
redis.call('DEL', KEYS[1])
local ttl = tonumber(ARGV[8])
local deadline = ttl > 0 and string.format('%.0f', now + ttl) or ''
redis.call('HSET', KEYS[1], 'b', ARGV[2], 's', ARGV[3], 'w', ARGV[4], 'h', ARGV[5], 'a', ARGV[6],
           'q', id, 'n', ARGV[12], 'r', ARGV[11], 'e', deadline, 'o', ARGV[13], 'z', 0)
redis.call('HSET', KEYS[1], 'z', redis.call('MEMORY', 'USAGE', KEYS[1], 'SAMPLES', 0) + ARGV[15])
if ttl > 0 then
  local oldest_id = string.format('%.0f', math.max(1, seq - ttl * 1000))
  redis.call('XADD', KEYS[2], 'MINID', '~', oldest_id, id .. '-0', 'p', ARGV[7], 'k', key)
else
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[9], id .. '-0', 'p', ARGV[7], 'k', key)
end
if KEYS[3] then
  ensure(KEYS[3], 'string')
  redis.call('SET', KEYS[3], key)
  incr(p .. 'stats', 'aliased', 1)
end
incr(p .. 'stats', 'puts', 1)
ensure(p .. 'namespaces', 'set')
redis.call('SADD', p .. 'namespaces', ARGV[12])
if ARGV[14] == '1' or kept == '2' then
  pin(p, key, tonumber(ARGV[17]), ttl, now)
elseif kept == '1' then
  enlist(p, key, '1', now_us(), now)
else
  expiring(p, key)
end
rebalance(p, tonumber(ARGV[16]))
return {id, DROPPED}
"""
)

# KEYS: value; ARGV: prefix, key, owner ('' unknown), pin (1/0), ttl ms, protected cap, pinned cap.
# A served entry: most recently used; protected if in probation and asked for by another owner.
TOUCH = (
    _LIB
    + """
local p, key = ARGV[1], ARGV[2]
if not ensure(KEYS[1], 'hash') then return {0, DROPPED} end
sane(p)
local now = now_ms()
if ARGV[4] == '1' then
  pin(p, key, tonumber(ARGV[7]), tonumber(ARGV[5]), now)
  rebalance(p, tonumber(ARGV[6]))
  return {1, DROPPED}
end
local row = redis.call('HMGET', KEYS[1], 'g', 'o')
local name = SEGMENT[row[1] or '']
if name then
  redis.call('ZADD', p .. name, 'XX', now_us(), key)
elseif ARGV[3] == '' or not row[2] or row[2] == '' or row[2] ~= ARGV[3] then
  enlist(p, key, '1', now_us(), now)
  rebalance(p, tonumber(ARGV[6]))
end
return {1, DROPPED}
"""
)

# KEYS: value; ARGV: prefix, key. The value, its stream entry, its alias and its bookkeeping.
DISCARD = (
    _LIB
    + """
sane(ARGV[1])
discard(ARGV[1], ARGV[2])
return {1, DROPPED}
"""
)

# ARGV: prefix, most to delete. Protected entries past their deadline (Redis does not expire
# them); returns how many went.
SWEEP = (
    _LIB
    + """
local p = ARGV[1]
sane(p)
local due = redis.call('ZRANGEBYSCORE', p .. 'due', '-inf', now_ms(), 'LIMIT', 0, tonumber(ARGV[2]))
for _, key in ipairs(due) do
  discard(p, key)
  redis.call('ZREM', p .. 'due', key)
end
if #due > 0 then incr(p .. 'stats', 'swept', #due) end
return {#due, DROPPED}
"""
)

# KEYS: stream; ARGV: first id (or '-'), count. Seqs as text and pHashes as 8-byte words,
# each joined into one string: a replica parses 10k rows in two numpy calls. An entry that is
# not what PUT writes (id <seq>-0, fields p = 8 bytes and k) is deleted and counted.
# Result: {seqs, hashes, entries read, entries dropped, last id read}.
ROWS_AFTER = (
    _LIB
    + """
if not ensure(KEYS[1], 'stream') then return {{'', '', 0, 0, ''}, DROPPED} end
local entries = redis.call('XRANGE', KEYS[1], ARGV[1], '+', 'COUNT', ARGV[2])
local seqs, hashes, dropped, last = {}, {}, 0, ''
for _, entry in ipairs(entries) do
  local id, fields = entry[1], entry[2]
  last = id
  local seq = string.match(id, '^(%d+)%-0$')
  if seq and #seq <= 18 and #fields == 4 and fields[1] == 'p' and #fields[2] == 8 and fields[3] == 'k' then
    seqs[#seqs + 1] = seq
    hashes[#hashes + 1] = fields[2]
  else
    redis.call('XDEL', KEYS[1], id)
    dropped = dropped + 1
  end
end
return {{table.concat(seqs, ' '), table.concat(hashes), #entries, dropped, last}, DROPPED}
"""
)

# KEYS: alias; ARGV: prefix. The value key, or nil (and the alias goes) if the value is gone.
RESOLVE = (
    _LIB
    + """
if not ensure(KEYS[1], 'string') then return {false, DROPPED} end
local key = redis.call('GET', KEYS[1])
if redis.call('EXISTS', ARGV[1] .. key) == 1 then return {key, DROPPED} end
redis.call('DEL', KEYS[1])
return {false, DROPPED}
"""
)

# KEYS: stream; ARGV: entry id, prefix. The row, or nil (and the entry goes) if its value is
# gone or the entry is not what PUT writes.
ROW = (
    _LIB
    + """
if not ensure(KEYS[1], 'stream') then return {false, DROPPED} end
local entry = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])[1]
if not entry then return {false, DROPPED} end
local fields = entry[2]
if #fields ~= 4 or fields[3] ~= 'k' then
  redis.call('XDEL', KEYS[1], ARGV[1])
  return {false, DROPPED}
end
local key = fields[4]
if ensure(ARGV[2] .. key, 'hash') then
  local row = redis.call('HMGET', ARGV[2] .. key, 's', 'w', 'h', 'a', 'q')
  if row[1] and row[5] and row[5] .. '-0' == ARGV[1] then
    return {{key, row[1], row[2], row[3], row[4]}, DROPPED}
  end
end
redis.call('XDEL', KEYS[1], ARGV[1])
return {false, DROPPED}
"""
)

# KEYS: epoch; ARGV: a fresh epoch, used if there is none (new, flushed or restarted server) or
# what is there is not a number (then every replica reloads).
EPOCH = (
    _LIB
    + """
if ensure(KEYS[1], 'string') then
  local epoch = redis.call('GET', KEYS[1])
  if string.match(epoch, '^%d+$') and #epoch <= 19 then return {epoch, DROPPED} end
  drop(KEYS[1], 'an epoch that is not a number')
end
redis.call('SET', KEYS[1], ARGV[1])
return {ARGV[1], DROPPED}
"""
)

# KEYS: stats, recent latencies of the kind; ARGV: kind, ms, window.
RECORD = (
    _LIB
    + """
ensure(KEYS[1], 'hash')
ensure(KEYS[2], 'list')
incr(KEYS[1], ARGV[1] .. ':n', 1)
local ms = redis.call('HGET', KEYS[1], ARGV[1] .. ':ms')
if ms and not tonumber(ms) then redis.call('HDEL', KEYS[1], ARGV[1] .. ':ms') end
redis.call('HINCRBYFLOAT', KEYS[1], ARGV[1] .. ':ms', ARGV[2])
redis.call('LPUSH', KEYS[2], ARGV[2])
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[3]) - 1)
return {1, DROPPED}
"""
)

# KEYS: lock; ARGV: owner, ttl ms. A lease: SET NX PX; a key there that is not a lease (the
# wrong type, or no expiry: nothing this code writes) is dropped first.
LOCK = (
    _LIB
    + """
if ensure(KEYS[1], 'string') and redis.call('PTTL', KEYS[1]) < 0 then
  drop(KEYS[1], 'a lease without an expiry')
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return {1, DROPPED} end
return {0, DROPPED}
"""
)

# KEYS: lock; ARGV: owner[, ttl ms]. Only the owner may extend or release its lease.
REFRESH = (
    _LIB
    + """
if not ensure(KEYS[1], 'string') or redis.call('GET', KEYS[1]) ~= ARGV[1] then return {0, DROPPED} end
return {redis.call('PEXPIRE', KEYS[1], ARGV[2]), DROPPED}
"""
)
UNLOCK = (
    _LIB
    + """
if not ensure(KEYS[1], 'string') or redis.call('GET', KEYS[1]) ~= ARGV[1] then return {0, DROPPED} end
return {redis.call('DEL', KEYS[1]), DROPPED}
"""
)
