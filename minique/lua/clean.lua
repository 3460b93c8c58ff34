-- Removes up to `limit` jobs of one state that are older than the cutoff: finished before it
-- (completed, failed), or created before it (waiting, delayed). Returns the removed ids.
-- ARGV: JP, state, cutoff ('g<ms>': that long before Redis' now, which stamped the jobs; or
-- ms since the epoch), limit
-- Waiting and delayed jobs are not kept in the order they were created (a promoted or
-- retried job enters the stream late, a delayed one sits by due time, a prioritized one by
-- priority), so every one is looked at, from where the last call stopped: ARGV[5] is ''
-- at first, then the cursor the last call returned ('s<stream id>' in the ready stream,
-- then 'p<score>' in the priority set; 'p<score>' in the delayed set). Such a call looks
-- at most 2 * limit + 100 jobs and returns {cursor ('' once every job was looked at),
-- removed ids...}.
-- State 'grouped' (waiting jobs in groups, includes/groups.lua) goes through the groups
-- named in ARGV[6..], from the group at 0-based index ARGV[5] ('index:offset': offset =
-- jobs of that group looked at and kept). It looks at most 2 * limit + 100 jobs per call
-- and returns {next index, next offset, removed ids...}; the next index is the number of
-- groups given once every one is done.
--@include base
--@once
local state, cutoff, limit = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
if string.sub(ARGV[3], 1, 1) == 'g' then cutoff = now_ms() - tonumber(string.sub(ARGV[3], 2)) end
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
elseif state == 'waiting' or state == 'delayed' then
  local set_key = (state == 'waiting') and K.pri or K.delayed
  local kind, at = string.sub(ARGV[5], 1, 1), string.sub(ARGV[5], 2)
  if kind == '' then kind = (state == 'waiting') and 's' or 'p' end
  local budget = 2 * limit + 100
  while #removed < limit and budget > 0 do
    local want = math.min(budget, 100)
    local ids, pos = {}, {}
    if kind == 's' then
      local start = (at == '') and '-' or ('(' .. at)
      for i, e in ipairs(redis.call('XRANGE', K.ready, start, '+', 'COUNT', want)) do
        ids[i], pos[i] = e[2][2], e[1]
      end
    else
      -- (Scores are distinct, each with a sequence number of its own (base.lua), unless
      -- one wrapped: a job sharing a score at a page's end may be left for another clean.)
      local rows = redis.call('ZRANGEBYSCORE', set_key, (at == '') and '-inf' or ('(' .. at),
                              '+inf', 'WITHSCORES', 'LIMIT', 0, want)
      for i = 1, #rows, 2 do ids[#ids + 1], pos[#pos + 1] = rows[i], rows[i + 1] end
    end
    local looked = 0
    for i, id in ipairs(ids) do
      if #removed >= limit then break end
      looked, budget, at = i, budget - 1, pos[i]
      local jk = JP .. id
      -- A stream entry made before the cutoff is a job created before it: no read.
      if (kind == 's' and tonumber(string.match(at, '^(%d+)')) <= cutoff)
          or (tonumber(redis.call('HGET', jk, 'ts')) or 0) <= cutoff then
        drop(id, jk)
      end
    end
    if #ids < want and looked == #ids then
      if kind == 'p' or state == 'delayed' then
        return {'', unpack(removed)}
      end
      kind, at = 'p', ''
    end
  end
  return {kind .. at, unpack(removed)}
elseif state == 'held' then
  -- Waiting jobs a worker holds ahead (waiting, to everyone else): created before the cutoff,
  -- each is marked for deletion as remove() marks one (deleted when its holder hands it
  -- back; run on if it had started) and the holders are told. From the held-set score
  -- after ARGV[5] ('' at first), at most 2 * limit + 100 looked at. Returns {cursor ('' once
  -- every held job was looked at), ms left of the longest hold (-1: none marked), marked
  -- ids...}: Queue.clean waits for the holders' answers.
  local want = 2 * limit + 100
  local rows = redis.call('ZRANGEBYSCORE', K.held, (ARGV[5] == '') and '-inf' or ('(' .. ARGV[5]),
                          '+inf', 'WITHSCORES', 'LIMIT', 0, want)
  local n, cursor = #rows / 2, ''
  for j = 1, n do
    -- (limit >= 1: never at j = 1, so the score before is there)
    if #removed >= limit then cursor = rows[2 * j - 2]; break end
    local id = rows[2 * j - 1]
    local jk = JP .. id
    if (tonumber(redis.call('HGET', jk, 'ts')) or 0) <= cutoff and mark_held_removed(jk, id) == 1 then
      emit('ev', 'removed', 'id', id, 'prev', 'waiting')
      removed[#removed + 1] = id
    end
    if j == n and n == want then cursor = rows[2 * j] end  -- a full page: more may follow
  end
  local wait = #removed > 0 and control_changed('remove') or -1
  return {cursor, wait, unpack(removed)}
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
  return redis.error_reply('ERR clean takes completed, failed, waiting, delayed, held or grouped')
end
return removed
