-- Removes a job scheduler, its keys, and its pending firing if that has not started.
-- KEYS: vector, scheduler hash, cron times, index, refill set
-- ARGV: JP, sid
--@include base
--@once
--@include scheduler
local sid, sk = ARGV[2], KEYS[NK + 1]
local nid = redis.call('HGET', sk, 'nid')
local existed = redis.call('EXISTS', sk)
sch_unlink_pending(nid, 'scheduler ' .. sid .. ' removed')
redis.call('DEL', sk, KEYS[NK + 2])
redis.call('ZREM', SCH_INDEX, sid)
redis.call('ZREM', SCH_REFILL, sid)
if existed == 1 then emit('ev', 'scheduler-removed', 'scheduler', sid) end
return existed
