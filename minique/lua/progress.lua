-- Stores a job's progress and announces it (the value only if small).
-- ARGV: JP, id, value (msgpack), event_value ('' when too large for an event), call id
-- A re-send of the call (redis-py, after a timeout) finds its id in the job's 'pgc' and
-- changes nothing: no second event.
--@include base
--@call_id
local jk = JP .. ARGV[2]
local f = redis.call('HMGET', jk, 'st', 'pgc')
if not f[1] and redis.call('EXISTS', jk) == 0 then
  return redis.error_reply('NOTFOUND job ' .. ARGV[2])
end
if f[2] == call_id then return 1 end
redis.call('HSET', jk, 'pg', ARGV[3], 'pgc', call_id)
emit('ev', 'progress', 'id', ARGV[2], 'pg', ARGV[4])
return 1
