-- Sends finished jobs back to waiting with fresh attempts: one job (ARGV[3] = id) or the
-- oldest ARGV[4] of the state set (failed or completed). With an id, a state given in
-- ARGV[2] must be the job's ('' takes either finished state).
-- ARGV: JP, state, id, batch
--@include base
--@include dedup
--@once
local state = ARGV[2]
local set_key = (state == 'failed') and K.failed or K.completed
local ids
if ARGV[3] ~= '' then
  local st = redis.call('HGET', JP .. ARGV[3], 'st')
  -- As users see it (minique/job.py public_state): a job a worker holds ahead is waiting,
  -- one removed while held is gone.
  if st == 'held' then st = 'waiting' end
  if not st or st == 'removed' then
    return redis.error_reply('NOTFOUND job ' .. ARGV[3] .. ' does not exist')
  end
  if state ~= '' and st ~= state and (st == 'failed' or st == 'completed') then
    return redis.error_reply('INVALIDSTATE job ' .. ARGV[3] .. ' is ' .. st .. ', not ' .. state)
  end
  if st ~= 'failed' and st ~= 'completed' then
    return redis.error_reply('INVALIDSTATE job ' .. ARGV[3] .. ' is ' .. tostring(st) ..
                             ', only finished jobs can be retried')
  end
  set_key = (st == 'failed') and K.failed or K.completed
  ids = {ARGV[3]}
else
  local batch = tonumber(ARGV[4])
  ids = {}
  for _, key in ipairs(finished_sets(set_key)) do
    if #ids < batch then
      for _, id in ipairs(redis.call('ZRANGE', key, 0, batch - #ids - 1)) do ids[#ids + 1] = id end
    end
  end
end
for _, id in ipairs(ids) do
  local jk = JP .. id
  unlist_finished(set_key, id)
  redis.call('HSET', jk, 'atm', 0, 'ats', 0, 'stc', 0)
  -- (hrc: the holds of dead holders that gave it back, which count as stalls do)
  redis.call('HDEL', jk, 'fr', 'stk', 'rv', 'fon', 'tok', 'cx', 'hrc')
  -- Unfinished again: it holds its dedup id again (includes/dedup.lua).
  local did = extra_in_use() and redis.call('HGET', jk, 'dd')
  if did then dedup_reclaim(jk, id, did) end
  enqueue_ready(jk, id, job_priority(jk))
  emit('ev', 'waiting', 'id', id)
end
return #ids
