-- Removes up to `limit` jobs of one state that are older than the cutoff: finished before it
-- (completed, failed), or created before it (waiting, delayed). Returns the removed ids.
-- ARGV: JP, state, cutoff_ms, limit
--@include base
local state, cutoff, limit = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local removed = {}
local function drop(id, jk)
  unlink_job(jk, id)
  delete_job_keys(id)
  emit('ev', 'removed', 'id', id, 'prev', state)
  removed[#removed + 1] = id
end
if state == 'completed' or state == 'failed' then
  local set_key = (state == 'completed') and K.completed or K.failed
  for _, key in ipairs(finished_sets(set_key)) do
    if #removed < limit then
      for _, id in ipairs(redis.call('ZRANGEBYSCORE', key, '-inf', cutoff, 'LIMIT', 0,
                                     limit - #removed)) do
        drop(id, JP .. id)
      end
    end
  end
elseif state == 'waiting' then
  -- Stream ids start with the time they were added at, so the range is the age filter.
  for _, e in ipairs(redis.call('XRANGE', K.ready, '-', cutoff, 'COUNT', limit)) do
    drop(e[2][2], JP .. e[2][2])
  end
  if #removed < limit then
    for _, id in ipairs(redis.call('ZRANGE', K.pri, 0, limit - #removed - 1)) do
      local jk = JP .. id
      if (tonumber(redis.call('HGET', jk, 'ts')) or 0) <= cutoff then drop(id, jk) end
    end
  end
elseif state == 'delayed' then
  for _, id in ipairs(redis.call('ZRANGE', K.delayed, 0, limit - 1)) do
    local jk = JP .. id
    if (tonumber(redis.call('HGET', jk, 'ts')) or 0) <= cutoff then drop(id, jk) end
  end
else
  return redis.error_reply('ERR clean takes completed, failed, waiting or delayed')
end
return removed
