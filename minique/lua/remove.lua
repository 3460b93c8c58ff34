-- Removes one job and all its keys. An active job cannot be removed: its worker owns it.
-- ARGV: JP, id, unfinished ('1': leave a completed or failed job, as Queue.abort does).
-- Returns 1 (removed), 0 (no such job, or a finished one left) or {2, ms} for a held job
-- (see below).
--@include base
--@once
local id = ARGV[2]
local jk = JP .. id
local st = redis.call('HGET', jk, 'st')
if not st then
  if redis.call('EXISTS', jk) == 1 then delete_job_keys(id); return 1 end
  return 0
end
if ARGV[3] == '1' and (st == 'completed' or st == 'failed') then return 0 end
if st == 'active' then
  return redis.error_reply('INVALIDSTATE job ' .. id .. ' is active; cancel it first')
end
-- Removed while held: the removal is the call's that marked it (an earlier remove() or
-- drain()), which counts it; this one finds no job to remove (0), as it would after a
-- waiting job's removal. Once the hold has run out (remove() calls again when it has
-- waited that out) the removal completes now.
if st == 'removed' then
  free_removed(jk, id, now_ms())
  return 0
end
if st == 'held' then
  -- Waiting, to the user, but in a worker's hands: it is deleted when the worker hands it
  -- back, which the control message asks for at once. remove() then waits for the answer
  -- (returned: the ms to wait at least): a job that had started already is not removed.
  if mark_held_removed(jk, id) == 1 then emit('ev', 'removed', 'id', id, 'prev', 'waiting') end
  return {2, control_changed('remove')}
end
unlink_job(jk, id)
delete_job_keys(id)
emit('ev', 'removed', 'id', id, 'prev', st)
-- Its pending children went with it; one a worker held was marked instead: remove() waits
-- out the holds before it returns ({3, ms}).
if flow_held_wait then return {3, flow_held_wait} end
return 1
