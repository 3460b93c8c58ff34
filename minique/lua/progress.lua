-- Stores a job's progress and announces it (the value only if small).
-- ARGV: JP, id, value (msgpack), event_value ('' when too large for an event)
--@include base
--@once
local jk = JP .. ARGV[2]
if redis.call('EXISTS', jk) == 0 then return redis.error_reply('NOTFOUND job ' .. ARGV[2]) end
redis.call('HSET', jk, 'pg', ARGV[3])
emit('ev', 'progress', 'id', ARGV[2], 'pg', ARGV[4])
return 1
