-- Replaces a job's data (BullMQ's updateData), in any state but removed.
-- ARGV: JP, id, data (msgpack). Returns 1, 0 (no such job) or {2, ms, token} for a job a
-- worker holds ahead.
-- A held job is waiting to everyone but its holder, which has the old data in memory: the
-- holders are asked to hand held jobs back (control_changed), and update_job_data() waits
-- for the answer (minique/holders.py; ms is what is left of the longest hold), so that the
-- job runs with the new data unless it had started before the call reached its worker, as
-- an active job does. An active job's processor keeps the data it started with; the next
-- attempt reads the new data (the "step jobs" pattern).
-- Once (a re-send gets the first reply): an older call re-sent after a newer one must not
-- write its data back over the newer data.
--@include base
--@once
local id = ARGV[2]
local jk = JP .. id
local st, tok = unpack(redis.call('HMGET', jk, 'st', 'tok'))
if st == 'removed' or (not st and redis.call('EXISTS', jk) == 0) then return 0 end
redis.call('HSET', jk, 'd', ARGV[3])
if st == 'held' then return {2, control_changed('data'), tok or ''} end
return 1
