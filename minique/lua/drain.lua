-- Removes up to ARGV[3] waiting (and, if ARGV[2] = '1', delayed) jobs. Call with ARGV[4] =
-- 'mark' until it returns less than the batch, then with '' (the waiting jobs), then with
-- 'held', each until it returns less than the batch: held jobs (waiting, to the user, but
-- in a worker's hands) move to
-- held_removed, and their worker deletes them when it hands them back (one that had
-- started already runs on). The last call tells the workers (control_changed) and returns
-- how long their longest hold lasts, which drain() waits out: after that no drained job
-- starts.
-- ARGV: JP, delayed, batch, phase ('mark' = held jobs, first; '' = waiting jobs; 'held'
-- = held jobs again, those taken meanwhile; 'gone')
-- Returns {removed, ms to wait (-1 until the last page)}; phase 'held' returns {0, ms, the
-- ids it marked...}: any of them may have started already (its start note on the way), so
-- drain() counts them once the holds are over, by what became of them.
-- Phase 'gone', once drain() has waited the holds out: the removals of up to `batch` held
-- jobs whose workers have not handed them back complete (their ids are free again); see
-- below for its paging.
--@include base
--@once
local batch = tonumber(ARGV[3])
local removed = 0
if ARGV[4] == '' then
  removed = delete_set_members(K.pri, batch)
  if removed < batch then
    removed = removed + delete_ready_entries(batch - removed)
  end
  if removed < batch then
    -- Grouped waiting jobs (includes/groups.lua): the groups that have some come first in
    -- the index.
    for _, g in ipairs(redis.call('ZREVRANGEBYSCORE', GI, '+inf', 1, 'LIMIT', 0, batch - removed)) do
      if removed >= batch then break end
      local n = delete_set_members(gwait(g), batch - removed)
      local left = tonumber(redis.call('ZINCRBY', GI, -n, g))
      redis.call('HINCRBY', K.meta, 'gwn', -n)
      if left <= 0 then group_forget_if_idle(g) end
      removed = removed + n
    end
  end
  if removed < batch and ARGV[2] == '1' then
    removed = removed + delete_set_members(K.delayed, batch - removed)
    if redis.call('EXISTS', K.delayed) == 0 then redis.call('DEL', BASE .. ':delayed-ahead') end
  end
  return {removed, -1}
end
if ARGV[4] == 'gone' then
  -- ARGV[2]: how many held_removed entries earlier pages kept (removed under a hold not
  -- over yet): they are skipped. Returns {entries looked at, entries kept}: call again
  -- while a whole batch was looked at.
  local now = now_ms()
  local skip = tonumber(ARGV[2]) or 0
  local ids = redis.call('ZRANGE', K.held_removed, skip, skip + batch - 1)
  local kept = 0
  for _, id in ipairs(ids) do
    if not free_removed(JP .. id, id, now) then kept = kept + 1 end
  end
  return {#ids, kept}
end
local ids = redis.call('ZRANGE', K.held, 0, batch - 1)
local out = {0, -1}
for _, id in ipairs(ids) do
  if mark_held_removed(JP .. id, id) == 1 then out[#out + 1] = id end
end
-- Phase 'mark' (before the waiting jobs): as 'held', without the event, and drain() does
-- not wait yet. Marked first, a job held when drain() was called is deleted however its
-- worker hands it back; one handed back before it was marked is waiting again, and the
-- waiting phase that comes next deletes it. The workers are told at once, so the marked
-- jobs go back (and are deleted) rather than start while the waiting phase runs (if it
-- marked any).
if #ids < batch then
  if ARGV[4] == 'held' then
    emit('ev', 'drained')
    out[2] = control_changed('drain')
  elseif #out > 2 then
    control_changed('drain')
  end
end
return out
