-- The fair queue's atomic steps: the same rule as scheduler.py (FairScheduler), in Redis.
-- KEYS[1] is the queue's entry hash "tlc:{name}:e"; every other key shares its prefix (and so
-- its hash tag, so a cluster keeps one queue on one node). ARGV[1] names the step,
-- ARGV[2] is FORGET_EVERY; the rest belong to the step.
--
--   e          hash  id -> the entry's JSON (u user, m model, p priority, c cap, and o the
--                    replica that holds the request, in a line shared by replicas), from Python
--   s          hash  id -> arrival number (FIFO within a user, and the rank of new users)
--   seq, n     str   arrivals so far, starts so far (the global dispatch counter)
--   served     zset  user -> dispatch number of their last start ("least recently served")
--   waiting    hash  user -> requests waiting (waiting_for, and who may be forgotten)
--   classes    zset  priority -> priority, the classes with someone waiting
--   u:<p>      zset  user -> rank in class p: last start, or (never served) arrival - 2^52
--   q:<p>:<u>  list  that user's waiting ids in class p, oldest first
--   v, oc      str   the line's version (every push, remove, start), and the whole order
--                    as last computed, "<version>|<json>" (replicas ask for it at once)
--   b:<id>     str   in a line shared by replicas: what another replica needs to run the
--                    request if its own replica dies (a JSON ticket, set by Python)

local P = string.sub(KEYS[1], 1, -2)
local FORGET_EVERY = tonumber(ARGV[2])
local NEVER = 4503599627370496 -- 2^52: never-served users rank first, by arrival

-- Lua turns numbers into strings with %.14g; counters and scores must stay exact.
local function fmt(x) return string.format('%.0f', x) end

local function qkey(p, user) return P .. 'q:' .. p .. ':' .. user end

local function last_served(user)
  local s = redis.call('ZSCORE', P .. 'served', user)
  if s then return tonumber(s) end
  return 0
end

-- Put `user` where they rank in class p now, or take them (and an empty class) out.
local function rescore(p, user)
  local head = redis.call('LINDEX', qkey(p, user), 0)
  if not head then
    redis.call('ZREM', P .. 'u:' .. p, user)
    if redis.call('ZCARD', P .. 'u:' .. p) == 0 then redis.call('ZREM', P .. 'classes', p) end
    return
  end
  local last = last_served(user)
  if last == 0 then last = tonumber(redis.call('HGET', P .. 's', head)) - NEVER end
  redis.call('ZADD', P .. 'u:' .. p, fmt(last), user)
end

local function unwait(user)
  if redis.call('HINCRBY', P .. 'waiting', user, -1) <= 0 then
    redis.call('HDEL', P .. 'waiting', user)
  end
end

-- Users served more than FORGET_EVERY starts ago with nothing waiting rank as new again.
local function forget(n)
  local old = redis.call('ZRANGEBYSCORE', P .. 'served', '-inf', '(' .. fmt(n - FORGET_EVERY))
  for _, user in ipairs(old) do
    if redis.call('HEXISTS', P .. 'waiting', user) == 0 then redis.call('ZREM', P .. 'served', user) end
  end
end

-- Replies are one JSON string, [[id, fields, arrival], ...]: one bulk string for the client
-- to read, instead of three per entry (reading thousands of small replies is what costs).
local function encode(id, json, seq) return '[' .. cjson.encode(id) .. ',' .. json .. ',' .. seq .. ']' end

local function push(id, json, user, p, ticket, keep)
  if redis.call('HEXISTS', P .. 'e', id) == 1 then return 0 end
  if ticket and ticket ~= '' then redis.call('SET', P .. 'b:' .. id, ticket, 'PX', keep) end
  local seq = redis.call('INCR', P .. 'seq')
  redis.call('INCR', P .. 'v')
  redis.call('HSET', P .. 'e', id, json)
  redis.call('HSET', P .. 's', id, fmt(seq))
  redis.call('HINCRBY', P .. 'waiting', user, 1)
  redis.call('ZADD', P .. 'classes', p, p)
  if redis.call('RPUSH', qkey(p, user), id) == 1 then rescore(p, user) end
  return 1
end

local function remove(id)
  local json = redis.call('HGET', P .. 'e', id)
  if not json then return 0 end
  local d = cjson.decode(json)
  local p = fmt(d.p)
  redis.call('LREM', qkey(p, d.u), 1, id)
  redis.call('HDEL', P .. 'e', id)
  redis.call('HDEL', P .. 's', id)
  redis.call('DEL', P .. 'b:' .. id)
  redis.call('INCR', P .. 'v')
  unwait(d.u)
  rescore(p, d.u)
  return 1
end

-- Start `head` (the oldest of `user` in class p): count the start, re-rank the user everywhere.
local function start(p, user, head, json)
  local seq = redis.call('HGET', P .. 's', head)
  redis.call('LPOP', qkey(p, user))
  redis.call('HDEL', P .. 'e', head)
  redis.call('HDEL', P .. 's', head)
  redis.call('DEL', P .. 'b:' .. head)
  unwait(user)
  local n = redis.call('INCR', P .. 'n')
  redis.call('INCR', P .. 'v')
  redis.call('ZADD', P .. 'served', fmt(n), user)
  for _, q in ipairs(redis.call('ZRANGE', P .. 'classes', 0, -1)) do
    if q == p or redis.call('ZSCORE', P .. 'u:' .. q, user) then rescore(q, user) end
  end
  if n % FORGET_EVERY == 0 then forget(n) end
  return '[' .. encode(head, json, seq) .. ']'
end

-- The first entry, in pop's order, that fits a free place: {'run', p, user, id, json, model}
-- when it is `me`'s (or nobody's; with `me` nil, every entry is: `pop`), {'other', replica,
-- id} when another live replica holds it, {'dead', p, user, id, json, model} when its
-- replica stopped saying it is alive. `pop` and `claim` walk the line this one way.
local function walk(eligible, running, use_caps, me)
  for _, p in ipairs(redis.call('ZREVRANGE', P .. 'classes', 0, -1)) do
    local from = 0
    while true do
      local users = redis.call('ZRANGE', P .. 'u:' .. p, from, from + 63)
      if #users == 0 then break end
      for _, user in ipairs(users) do
        local head = redis.call('LINDEX', qkey(p, user), 0)
        local json = redis.call('HGET', P .. 'e', head)
        local d = cjson.decode(json)
        local held = use_caps and d.c > 0 and d.c <= (running[user] or 0)
        if not held and (eligible == nil or eligible[d.m]) then
          if me == nil or d.o == nil or d.o == me then return {'run', p, user, head, json, d.m} end
          if redis.call('EXISTS', P .. 'alive:' .. d.o) == 1 then return {'other', d.o, head} end
          return {'dead', p, user, head, json, d.m}
        end
      end
      from = from + 64
    end
  end
  return nil
end

-- ARGV: eligible models ('*' for all) as one list, running counts as user/count pairs.
local function pop(eligible, running, use_caps)
  local got = walk(eligible, running, use_caps, nil)
  if got == nil then return nil end
  return start(got[2], got[3], got[4], got[5])
end

-- Every waiting entry in the order pop would start them with every model free: per class,
-- users by (last start, oldest arrival), then round robin, each start moving a user last.
local function compute_order(model)
  local out, sim, tick = {}, {}, tonumber(redis.call('GET', P .. 'n') or '0')
  for _, p in ipairs(redis.call('ZREVRANGE', P .. 'classes', 0, -1)) do
    local rows = {}
    for _, user in ipairs(redis.call('ZRANGE', P .. 'u:' .. p, 0, -1)) do
      local ids = redis.call('LRANGE', qkey(p, user), 0, -1)
      local last = sim[user] or last_served(user)
      rows[#rows + 1] = {user, ids, last, tonumber(redis.call('HGET', P .. 's', ids[1]))}
    end
    table.sort(rows, function(a, b)
      if a[3] ~= b[3] then return a[3] < b[3] end
      return a[4] < b[4]
    end)
    local k = 1
    while #rows > 0 do
      local still = {}
      for _, row in ipairs(rows) do
        local id = row[2][k]
        local json = redis.call('HGET', P .. 'e', id)
        if model == nil or cjson.decode(json).m == model then
          out[#out + 1] = encode(id, json, redis.call('HGET', P .. 's', id))
        end
        tick = tick + 1
        sim[row[1]] = tick
        if row[2][k + 1] then still[#still + 1] = row end
      end
      rows, k = still, k + 1
    end
  end
  return '[' .. table.concat(out, ',') .. ']'
end

-- Free places per model, as Catalog.free_pool chooses: {model: the least busy pool's lease key}
-- for models with a pool that has room (leases that ran out do not count), and the pools' keys.
local function free_places(pools, now)
  local eligible, keys = {}, {}
  for model, choices in pairs(pools) do
    local best, least = nil, nil
    for _, choice in ipairs(choices) do
      local key = P .. 'lease:' .. choice[1]
      redis.call('ZREMRANGEBYSCORE', key, '-inf', fmt(now))
      keys[key] = true
      local busy = redis.call('ZCARD', key)
      if busy < choice[2] and (least == nil or busy < least) then best, least = key, busy end
    end
    eligible[model] = best
  end
  return eligible, keys
end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Pop and lease in one step: ARGV pools as {model: [[pool, capacity], ...]}. A model is
-- eligible when one of its pools has a free place (leases that ran out do not count); the
-- request started gets a lease on the least busy such pool, as Catalog.free_pool chooses.
local function pop_and_lease(pools, running, strict, ttl, lease_id)
  local now = now_ms()
  local eligible = free_places(pools, now)
  local got = nil
  if running ~= nil then got = pop(eligible, running, true) end
  if got == nil and not (running ~= nil and strict) then got = pop(eligible, {}, false) end
  if got == nil then return nil end
  local key = eligible[cjson.decode(got)[1][2].m]
  redis.call('ZADD', key, fmt(now + ttl), lease_id)
  if redis.call('PTTL', key) < ttl then redis.call('PEXPIRE', key, ttl) end
  return '[' .. got .. ',' .. cjson.encode(string.sub(key, #P + 7)) .. ']'
end

-- The request's log notes now name `me` (replica.py's `live` hash and `who` key).
local function adopt(id, me)
  redis.call('HSET', P .. 'live', id, me)
  local who = redis.call('GET', P .. 'who:' .. id)
  if who then
    local d = cjson.decode(who)
    d.replica = me
    redis.call('SET', P .. 'who:' .. id, cjson.encode(d), 'KEEPTTL')
  end
end

-- A line shared by replicas (ARGV: pools, strict, ttl, lease id, me). pop_and_lease's rule,
-- but every replica decides alike: the running counts are the leases' own (each lease id
-- ends in '|<user>'), not the caller's; another live replica's entry is not taken here:
-- the step names that replica, which is told to take it; and a dead replica's entry is
-- *adopted*: started here, with its ticket, and its log's notes (`live`, `who`) moved to
-- `me` in the same step, so the survivors' sweep never ends it (events.lua). An entry
-- whose ticket ran out (its queue timeout) is dropped instead, and the sweep ends it.
local function claim(pools, strict, ttl, lease_id, me)
  local now = now_ms()
  local eligible, keys = free_places(pools, now)
  local running = {}
  for key in pairs(keys) do
    for _, id in ipairs(redis.call('ZRANGE', key, 0, -1)) do
      local user = string.match(id, '^[^|]*|(.*)$')
      if user then running[user] = (running[user] or 0) + 1 end
    end
  end
  while true do
    local got = walk(eligible, running, true, me)
    if got == nil and not strict then got = walk(eligible, {}, false, me) end
    if got == nil then return nil end
    if got[1] == 'other' then return cjson.encode(got) end
    local ticket = nil
    if got[1] == 'dead' then ticket = redis.call('GET', P .. 'b:' .. got[4]) end
    if got[1] == 'dead' and not ticket then
      remove(got[4])
    else
      local started = start(got[2], got[3], got[4], got[5])
      local key, held = eligible[got[6]], lease_id .. '|' .. got[3]
      redis.call('ZADD', key, fmt(now + ttl), held)
      if redis.call('PTTL', key) < ttl then redis.call('PEXPIRE', key, ttl) end
      local reply = '["run",' .. started .. ',' .. cjson.encode(string.sub(key, #P + 7)) .. ','
        .. cjson.encode(held)
      if ticket then
        adopt(got[4], me)
        reply = reply .. ',' .. ticket
      end
      return reply .. ']'
    end
  end
end

-- The whole order is what every replica's positions read, at once, as often as the line
-- moves: computed once per version of the line, then served from `oc` until it moves.
local function order(model)
  if model ~= nil then return compute_order(model) end
  local v = redis.call('GET', P .. 'v') or '0'
  local cached = redis.call('GET', P .. 'oc')
  if cached then
    local bar = string.find(cached, '|', 1, true)
    if string.sub(cached, 1, bar - 1) == v then return string.sub(cached, bar + 1) end
  end
  local out = compute_order(nil)
  redis.call('SET', P .. 'oc', v .. '|' .. out, 'PX', 60000)
  return out
end

local op = ARGV[1]
if op == 'push' then return push(ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]) end
if op == 'remove' then return remove(ARGV[3]) end
if op == 'order' then
  if ARGV[3] == '' then return order(nil) end
  return order(ARGV[3])
end
if op == 'pop' then
  local eligible = nil
  if ARGV[3] ~= '*' then eligible = {}; for _, m in ipairs(cjson.decode(ARGV[3])) do eligible[m] = true end end
  local running = nil
  if ARGV[4] ~= '' then running = {}; local r = cjson.decode(ARGV[4]); for u, c in pairs(r) do running[u] = c end end
  if running ~= nil then
    local got = pop(eligible, running, true)
    if got or ARGV[5] == '1' then return got end
  end
  return pop(eligible, {}, false)
end
if op == 'pop_and_lease' then
  local running = nil
  if ARGV[4] ~= '' then running = cjson.decode(ARGV[4]) end
  return pop_and_lease(cjson.decode(ARGV[3]), running, ARGV[5] == '1', tonumber(ARGV[6]), ARGV[7])
end
if op == 'claim' then
  return claim(cjson.decode(ARGV[3]), ARGV[4] == '1', tonumber(ARGV[5]), ARGV[6], ARGV[7])
end
-- A request that arrives: push it (once: a second push changes nothing), then claim, in
-- one step (one round trip to its start).
if op == 'push_claim' then
  push(ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8])
  return claim(cjson.decode(ARGV[9]), ARGV[10] == '1', tonumber(ARGV[11]), ARGV[12], ARGV[13])
end
return redis.error_reply('unknown step ' .. tostring(op))
