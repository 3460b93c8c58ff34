-- Removes a job scheduler, its keys, and its pending firing if that has not started.
-- KEYS: vector, scheduler hash, cron times, index, refill set
-- ARGV: JP, sid. Returns 1 (removed) or 0 (no such scheduler), or {that, ms, firing ids}
-- when workers hold firings taken last (below; ms: what is left of the longest hold; the
-- ids space-separated).
--@include base
--@once
--@include scheduler
local sid, sk = ARGV[2], KEYS[NK + 1]
local ids = redis.call('HMGET', sk, 'nid', 'lid')
local existed = redis.call('EXISTS', sk)
sch_unlink_pending(ids[1], 'scheduler ' .. sid .. ' removed')
-- The firings taken last ('lid', includes/scheduler.lua) may be held by workers ahead of
-- their start: waiting, to the user, so withdrawn as remove() withdraws a held job (its
-- worker hands it back and it is deleted; one that had started runs on). The caller waits
-- for the answers. One its worker handed back before it started (its hold ran out, a
-- control change ended it) is waiting again, never started ('ats' 0): withdrawn as the
-- pending firing is.
local held = {}
for fid in string.gmatch(ids[2] or '', '%S+') do
  local f = redis.call('HMGET', JP .. fid, 'st', 'ats')
  if f[1] == 'held' then
    if mark_held_removed(JP .. fid, fid) == 1 then
      emit('ev', 'removed', 'id', fid, 'prev', 'waiting', 'reason', 'scheduler ' .. sid .. ' removed')
    end
    held[#held + 1] = fid
  elseif f[1] == 'waiting' and f[2] == '0' then
    sch_unlink_pending(fid, 'scheduler ' .. sid .. ' removed')
  end
end
local wait = #held > 0 and control_changed('remove') or -1
redis.call('DEL', sk, KEYS[NK + 2])
redis.call('ZREM', SCH_INDEX, sid)
redis.call('ZREM', SCH_REFILL, sid)
if existed == 1 then emit('ev', 'scheduler-removed', 'scheduler', sid) end
if wait >= 0 then return {existed, wait, table.concat(held, ' ')} end
return existed
