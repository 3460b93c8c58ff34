-- Removes finished jobs beyond a retention policy. `budget` bounds the work of one call;
-- the periodic sweep and later finishes remove the rest.
local function trim_finished(set_key, keep_count, keep_age_ms, now, budget)
  local removed = 0
  if keep_age_ms >= 0 then
    local ids = redis.call('ZRANGEBYSCORE', set_key, '-inf', now - keep_age_ms, 'LIMIT', 0, budget)
    if #ids > 0 then
      for _, id in ipairs(ids) do delete_job_keys(id) end
      redis.call('ZREM', set_key, unpack(ids))
      removed = #ids
    end
  end
  if keep_count >= 0 and removed < budget then
    local excess = redis.call('ZCARD', set_key) - keep_count
    if excess > 0 then
      local n = math.min(excess, budget - removed)
      local ids = redis.call('ZRANGE', set_key, 0, n - 1)
      for _, id in ipairs(ids) do delete_job_keys(id) end
      redis.call('ZREMRANGEBYRANK', set_key, 0, n - 1)
      removed = removed + n
    end
  end
  return removed
end
