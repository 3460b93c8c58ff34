-- Retention of finished jobs. Each job keeps its own setting (count, age; -1 = no limit),
-- whatever the settings of the jobs around it:
--   age A ms:  the job is removed A ms after it finished;
--   count N:   the job is removed once N later jobs have been stored in the same state, so
--              a queue whose jobs share one setting lists at most the last N;
--   0 for either: the job is removed as it finishes and never stored;
--   neither:   the job stays until it is removed by hand.
-- Beside each state's listing set (scored by finish time), two deadline indexes hold only
-- the jobs with a limit, so one job's limit never reaches another job:
--   <set>:by-age    ZSET  id -> removal time (ms)
--   <set>:by-count  ZSET  id -> the state's sequence number at which it goes
-- and the meta field 'seq:<state>' counts the jobs stored in that state.

local function seq_field(set_key) return 'seq:' .. string.sub(set_key, #BASE + 2) end

-- The jobs entering one state in one script call; retention_flush writes them.
local function retention_batch(set_key)
  return {set = set_key, listed = {}, ages = {}, counts = {}}
end

-- Notes a job that finished into the batch's state. Returns false if its setting removes it
-- at once: the caller then deletes it instead of storing it.
local function retain(rb, id, now_s, now, keep_count, keep_age)
  if keep_count == 0 or keep_age == 0 then return false end
  local listed = rb.listed
  listed[#listed + 1] = now_s
  listed[#listed + 1] = id
  if keep_age > 0 then
    rb.ages[#rb.ages + 1] = int_str(now + keep_age)
    rb.ages[#rb.ages + 1] = id
  end
  if keep_count > 0 then
    -- The deadline is known once the batch's first sequence number is (retention_flush).
    rb.counts[#rb.counts + 1] = #listed / 2 + keep_count
    rb.counts[#rb.counts + 1] = id
  end
  return true
end

-- Removes the jobs of a state whose deadline has passed, at most `budget` per call (later
-- calls and the sweep remove the rest). `seq` is the state's sequence number (nil: read it).
-- Only a job still listed in the state is deleted: an index entry that outlived its job's
-- stay in the state (retried, removed) must never delete a later job of the same id.
local function trim_finished(set_key, now, seq, budget)
  local ages, counts = by_age(set_key), by_count(set_key)
  local due = redis.call('ZRANGEBYSCORE', ages, '-inf', int_str(now), 'LIMIT', 0, budget)
  if #due < budget then
    seq = seq or tonumber(redis.call('HGET', K.meta, seq_field(set_key))) or 0
    local more = redis.call('ZRANGEBYSCORE', counts, '-inf', int_str(seq), 'LIMIT', 0,
                            budget - #due)
    for _, id in ipairs(more) do due[#due + 1] = id end
  end
  if #due == 0 then return 0 end
  local listed = redis.call('ZMSCORE', set_key, unpack(due))
  local gone, seen = {}, {}
  for i, id in ipairs(due) do
    if listed[i] and not seen[id] then  -- an id due by age and by count is deleted once
      seen[id] = true
      gone[#gone + 1] = id
      delete_job_keys(id)
    end
  end
  call_batched('ZREM', set_key, gone)
  call_batched('ZREM', ages, due)
  call_batched('ZREM', counts, due)
  return #gone
end

-- Stores the batch's jobs in their state and indexes, then applies retention to the state.
local function retention_flush(rb, now, budget)
  local n = #rb.listed / 2
  if n == 0 then return 0 end
  local seq = redis.call('HINCRBY', K.meta, seq_field(rb.set), n)
  call_batched('ZADD', rb.set, rb.listed)
  call_batched('ZADD', by_age(rb.set), rb.ages)
  local counts = rb.counts
  for i = 1, #counts, 2 do counts[i] = int_str(seq - n + counts[i]) end
  call_batched('ZADD', by_count(rb.set), counts)
  return trim_finished(rb.set, now, seq, budget)
end
