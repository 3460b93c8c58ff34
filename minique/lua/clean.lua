-- Removes up to `limit` jobs of one state that are older than the cutoff: finished before it
-- (completed, failed), or created before it (waiting, delayed). Returns the removed ids.
-- ARGV: JP, state, cutoff_ms, limit
-- State 'grouped' (waiting jobs in groups, includes/groups.lua) goes through the groups
-- named in ARGV[6..], from the group at 0-based index ARGV[5] ('index:offset': offset =
-- jobs of that group looked at and kept). It looks at most 2 * limit + 100 jobs per call
-- and returns {next index, next offset, removed ids...}; the next index is the number of
-- groups given once every one is done.
--@include base
--@once
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
elseif state == 'grouped' then
  local at, offset = string.match(ARGV[5], '^(%d+):(%d+)$')
  local i, budget = tonumber(at) + 1, 2 * limit + 100
  offset = tonumber(offset)
  local groups = {select(6, unpack(ARGV))}
  while groups[i] and #removed < limit and budget > 0 do
    local page = redis.call('ZRANGE', gwait(groups[i]), offset, offset + math.min(budget, 100) - 1)
    for _, id in ipairs(page) do
      if #removed >= limit then break end
      budget = budget - 1
      local jk = JP .. id
      if (tonumber(redis.call('HGET', jk, 'ts')) or 0) <= cutoff then drop(id, jk)
      else offset = offset + 1 end
    end
    if #page == 0 then i, offset = i + 1, 0 end
  end
  local out = {i - 1, offset}
  for _, id in ipairs(removed) do out[#out + 1] = id end
  return out
else
  return redis.error_reply('ERR clean takes completed, failed, waiting, delayed or grouped')
end
return removed
