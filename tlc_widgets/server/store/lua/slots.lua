-- Slot leases: KEYS[1] is one pool's sorted set "tlc:{name}:lease:<pool>", lease id -> the
-- Redis-clock millisecond at which it ends. Every step first drops the leases that ran out,
-- so a dead replica's places come back at the first look after their time, with no sweeper.
-- ARGV[1] names the step: acquire <capacity> <ttl ms> <id> | renew <ttl ms> <id> |
-- release <id> | busy.

local key, op = KEYS[1], ARGV[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function fmt(x) return string.format('%.0f', x) end

redis.call('ZREMRANGEBYSCORE', key, '-inf', fmt(now))

-- The whole set vanishes once nobody has renewed for a lease's time: no pool lingers.
local function keep(ttl)
  if redis.call('PTTL', key) < ttl then redis.call('PEXPIRE', key, ttl) end
end

if op == 'acquire' then
  local capacity, ttl = tonumber(ARGV[2]), tonumber(ARGV[3])
  if redis.call('ZCARD', key) >= capacity then return 0 end
  redis.call('ZADD', key, fmt(now + ttl), ARGV[4])
  keep(ttl)
  return 1
elseif op == 'renew' then
  local ttl = tonumber(ARGV[2])
  if not redis.call('ZSCORE', key, ARGV[3]) then return 0 end
  redis.call('ZADD', key, 'XX', fmt(now + ttl), ARGV[3])
  keep(ttl)
  return 1
elseif op == 'release' then
  return redis.call('ZREM', key, ARGV[2])
elseif op == 'busy' then
  return redis.call('ZCARD', key)
end
return redis.error_reply('unknown step ' .. tostring(op))
