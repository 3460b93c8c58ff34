-- Retention of finished jobs. Each job keeps its own setting (count, age; -1 = no limit),
-- whatever the settings of the jobs around it: finished jobs are grouped by setting, and
-- each group is trimmed by its own setting alone.
--   0 for either: removed as it finishes, never stored;
--   count n: at most the n newest jobs of the group are kept;
--   age a ms: removed a ms after it finished; neither: kept until removed by hand.
-- The group of the state's shared setting (meta 'keep:<set>', taken from the first job
-- stored while the state is empty) lives in the state's set itself: a queue whose jobs
-- share one setting pays nothing for the others. Every other group has a set of its own,
-- '<set>:keep:<count>:<age>', listed in '<set>:keeps' (base.lua: group_set, groups_of).

-- Removes the jobs of one group beyond its setting; `budget` bounds the work of one call
-- (later calls and the sweep remove the rest).
local function trim_group(set_key, keep_count, keep_age_ms, now, budget)
  local removed = 0
  if keep_age_ms >= 0 then
    local ids = redis.call('ZRANGEBYSCORE', set_key, '-inf', now - keep_age_ms, 'LIMIT', 0, budget)
    if #ids > 0 then
      delete_jobs_keys(ids)
      redis.call('ZREM', set_key, unpack(ids))
      removed = #ids
    end
  end
  if keep_count >= 0 and removed < budget then
    local excess = redis.call('ZCARD', set_key) - keep_count
    if excess > 0 then
      local n = math.min(excess, budget - removed)
      local ids = redis.call('ZRANGE', set_key, 0, n - 1)
      delete_jobs_keys(ids)
      redis.call('ZREMRANGEBYRANK', set_key, 0, n - 1)
      removed = removed + n
    end
  end
  return removed
end

local function parse_setting(text)
  local kc, ka = string.match(text or '', '^(-?%d+):(-?%d+)$')
  if not kc then return nil end
  return {tonumber(kc), tonumber(ka)}
end

-- Applies retention to every group of a state (the sweep of a queue that went quiet).
local function trim_finished(set_key, now, budget)
  local removed = 0
  local shared = parse_setting(redis.call('HGET', K.meta, 'keep:' .. set_key))
  if shared then removed = trim_group(set_key, shared[1], shared[2], now, budget) end
  local groups = groups_of(set_key)
  for _, key in ipairs(redis.call('SMEMBERS', groups)) do
    if removed >= budget then break end
    local setting = parse_setting(string.sub(key, #set_key + 7))  -- after ':keep:'
    if setting then
      removed = removed + trim_group(key, setting[1], setting[2], now, budget - removed)
    end
    if redis.call('EXISTS', key) == 0 then redis.call('SREM', groups, key) end
  end
  return removed
end

-- The jobs finishing into one state in one script call; retention_flush stores them.
local function retention_batch(set_key)
  return {set = set_key, shared = nil, adopt = false, empty = nil, by_set = {}, order = {}}
end

-- Notes a job that finished into the batch's state. Returns false if its setting removes
-- it at once: the caller then deletes it instead of storing it.
local function retain(rb, id, now_s, keep_count, keep_age)
  if keep_count == 0 or keep_age == 0 then return false end
  if rb.shared == nil then
    rb.shared = parse_setting(meta_marks()['keep:' .. rb.set]) or false
  end
  local key
  local shared = rb.shared
  if shared and shared[1] == keep_count and shared[2] == keep_age then
    key = rb.set
  else
    key = group_set(rb.set, keep_count, keep_age)
    -- The first job stored in an empty state sets the state's shared setting.
    if rb.empty == nil then rb.empty = redis.call('EXISTS', rb.set) == 0 end
    if rb.empty and not rb.by_set[rb.set] and redis.call('EXISTS', key) == 0 then
      rb.shared, rb.adopt, key = {keep_count, keep_age}, true, rb.set
    end
  end
  local entries = rb.by_set[key]
  if not entries then
    entries = {}
    rb.by_set[key] = entries
    rb.order[#rb.order + 1] = {key, keep_count, keep_age}
  end
  entries[#entries + 1] = now_s
  entries[#entries + 1] = id
  return true
end

-- Stores the batch's jobs in their groups, then trims the groups they joined.
local function retention_flush(rb, now, budget)
  if rb.adopt then
    local setting = int_str(rb.shared[1]) .. ':' .. int_str(rb.shared[2])
    redis.call('HSET', K.meta, 'keep:' .. rb.set, setting)
    meta_set('keep:' .. rb.set, setting)
  end
  for _, g in ipairs(rb.order) do
    local key = g[1]
    call_batched('ZADD', key, rb.by_set[key])
    if key ~= rb.set then redis.call('SADD', groups_of(rb.set), key) end
    trim_group(key, g[2], g[3], now, budget)
  end
end
