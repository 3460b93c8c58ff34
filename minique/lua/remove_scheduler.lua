-- Removes a job scheduler, its keys, and its pending firing if that has not started.
-- KEYS: vector, scheduler hash, cron times, index, refill set
-- ARGV: JP, sid. Returns 1 (removed) or 0 (no such scheduler), or {that, ms, firing id}
-- when the firing taken last is held by a worker (below; ms: what is left of its hold).
--@include base
--@once
--@include scheduler
local sid, sk = ARGV[2], KEYS[NK + 1]
local ids = redis.call('HMGET', sk, 'nid', 'lid')
local existed = redis.call('EXISTS', sk)
sch_unlink_pending(ids[1], 'scheduler ' .. sid .. ' removed')
-- The firing taken last may be held by a worker ahead of its start: waiting, to the user,
-- so withdrawn as remove() withdraws a held job (its worker hands it back and it is
-- deleted; one that had started runs on). The caller waits for that answer.
-- One its worker handed back before it started (its hold ran out, a control change ended
-- it) is waiting again, never started ('ats' 0): withdrawn as the pending firing is.
local wait = -1
local last = ids[2] and redis.call('HMGET', JP .. ids[2], 'st', 'ats') or {}
if last[1] == 'held' then
  if mark_held_removed(JP .. ids[2], ids[2]) == 1 then
    emit('ev', 'removed', 'id', ids[2], 'prev', 'waiting', 'reason', 'scheduler ' .. sid .. ' removed')
  end
  wait = control_changed('remove')
elseif last[1] == 'waiting' and last[2] == '0' then
  sch_unlink_pending(ids[2], 'scheduler ' .. sid .. ' removed')
end
redis.call('DEL', sk, KEYS[NK + 2])
redis.call('ZREM', SCH_INDEX, sid)
redis.call('ZREM', SCH_REFILL, sid)
if existed == 1 then emit('ev', 'scheduler-removed', 'scheduler', sid) end
if wait >= 0 then return {existed, wait, ids[2]} end
return existed
