-- Changes when a delayed job falls due (BullMQ's changeDelay): ARGV[3] ms from now (0: due
-- at once; a worker promotes it with its next call). ARGV: JP, id, delay ms.
-- Returns the ms it falls due at (Redis clock), 0 (no such job); INVALIDSTATE for a job
-- that is not delayed, and for a scheduler's firing (its time is the scheduler's: change
-- the scheduler).
-- Once (a re-send gets the first reply): a re-sent call must not count its delay again
-- from a later now.
--@include base
--@once
local id, delay = ARGV[2], tonumber(ARGV[3])
local jk = JP .. id
local st = redis.call('HGET', jk, 'st')
if not st or st == 'removed' then return 0 end
if st ~= 'delayed' then
  return redis.error_reply('INVALIDSTATE job ' .. id .. ' is ' .. st .. ', not delayed')
end
if string.sub(id, 1, 6) == 'sched:' then
  return redis.error_reply('INVALIDSTATE job ' .. id .. " is a scheduler's firing: change "
    .. 'the scheduler (upsert_job_scheduler) instead')
end
local now = now_ms()
-- Blocked workers sleep until the earliest due time they know of: a job due sooner must
-- rouse them (as add.lua does for a new delayed job).
local first = redis.call('ZRANGE', K.delayed, 0, 0, 'WITHSCORES')
if not first[2] or (now + delay) * DELAY_SHIFT < tonumber(first[2]) then wake() end
enqueue_delayed(jk, id, now + delay)
emit('ev', 'delayed', 'id', id, 'delay', delay)
return now + delay
