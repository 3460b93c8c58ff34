-- Removes one job and all its keys. An active job cannot be removed: its worker owns it.
-- ARGV: JP, id. Returns 1 (removed), 0 (no such job) or {2, ms} for a held job (see below).
--@include base
--@once
local id = ARGV[2]
local jk = JP .. id
local st = redis.call('HGET', jk, 'st')
if not st then
  if redis.call('EXISTS', jk) == 1 then delete_job_keys(id); return 1 end
  return 0
end
if st == 'active' then
  return redis.error_reply('INVALIDSTATE job ' .. id .. ' is active; cancel it first')
end
-- Removed while held, and its hold has run out since (remove() calls again once it has
-- waited that out): the removal completes now.
if st == 'removed' and free_removed(jk, id, now_ms()) then return 1 end
if st == 'held' or st == 'removed' then
  -- Waiting, to the user, but in a worker's hands: it is deleted when the worker hands it
  -- back, which the control message asks for at once. remove() then waits for the answer
  -- (returned: the ms to wait at least): a job that had started already is not removed.
  if mark_held_removed(jk, id) == 1 then emit('ev', 'removed', 'id', id, 'prev', 'waiting') end
  return {2, control_changed('remove')}
end
unlink_job(jk, id)
delete_job_keys(id)
emit('ev', 'removed', 'id', id, 'prev', st)
return 1
