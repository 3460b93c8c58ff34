-- Stores a job's progress and announces it (the value only if small).
-- ARGV: JP, id, value (msgpack), event_value ('' when too large for an event), call id (16
-- hex digits, the same in every re-send)
-- A re-send of a call (redis-py, after a timeout) finds its id among the job's last
-- RECENT_CALLS calls ('pgc') and changes nothing: no second event, and no older value
-- over a newer one. Kept in the job, as log.lua does, for the same reason.
--@include base
local RECENT_CALLS = 8
local id, call_id = ARGV[2], ARGV[5]
local jk = JP .. id
local f = redis.call('HMGET', jk, 'st', 'pgc')
if not f[1] and redis.call('EXISTS', jk) == 0 then
  return redis.error_reply('NOTFOUND job ' .. id)
end
local recent = f[2] or ''
if string.find(recent, call_id, 1, true) then return 1 end
local calls = {call_id}
for entry in string.gmatch(recent, '[^,]+') do
  if #calls == RECENT_CALLS then break end
  calls[#calls + 1] = entry
end
redis.call('HSET', jk, 'pg', ARGV[3], 'pgc', table.concat(calls, ','))
emit('ev', 'progress', 'id', id, 'pg', ARGV[4])
return 1
