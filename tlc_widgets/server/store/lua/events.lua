-- End a dead replica's request with one terminal event. KEYS[1] its event stream, KEYS[2]
-- the live hash (id -> replica), KEYS[3] its who key, KEYS[4] the shared line's entries.
-- ARGV: request id, the dead replica, the error event's JSON, how long to keep the log (ms).
-- All or nothing, and only while the request is still live under that replica, is not
-- waiting in the shared line (a survivor will run it: queue.lua's claim adopts it) and its
-- log has no terminal event (`t`): never a second ending, whoever else tries at once.

local stream, live, who = KEYS[1], KEYS[2], KEYS[3]
local id, replica, data, keep = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
if redis.call('HGET', live, id) ~= replica then return 0 end
if redis.call('HEXISTS', KEYS[4], id) == 1 then return 0 end
redis.call('HDEL', live, id)
local n = 0
local last = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)
if #last > 0 then
  local fields = last[1][2]
  for i = 1, #fields, 2 do
    if fields[i] == 't' then return 0 end
  end
  n = tonumber(string.match(last[1][1], '^0%-(%d+)$'))
end
n = n + 1
local text = 'event: error\ndata: ' .. data .. '\nid: ' .. n .. '\n\n'
redis.call('XADD', stream, '0-' .. n, 'f', text, 't', 1)
redis.call('PEXPIRE', stream, keep)
redis.call('PEXPIRE', who, keep)
return 1
