-- Deduplication: a dedup id names at most one job at a time. Its key DEDUP_PREFIX .. id
-- (base.lua) holds the job's id.
--   Without a ttl the job carries the dedup id ('dd') and frees it when it completes or
--   fails (finish.lua, stalled.lua) or is deleted unfinished (base.lua delete_job_keys).
--   With a ttl the key expires on its own, whatever the job does (throttling).
-- A duplicate writes nothing but its event; with 'replace' it also replaces the data of
-- the job while that is delayed and restarts its delay (debounce), with 'extend' it
-- restarts the ttl. With 'keep_last_if_active' (flag k; no ttl), a duplicate of an active
-- job is kept, the last one replacing the one before, and added when the active job
-- finishes (base.lua release_dedup): one job runs at a time, and the last add runs after.

-- Without a ttl only an unfinished job holds a dedup id (guards a release never made).
-- 'removed' (removed while a worker held it) still does: its holder may have started it
-- (then it runs on); if not, it is deleted, which frees the id (base.lua free_removed).
local function unfinished(id)
  local st = redis.call('HGET', JP .. id, 'st')
  return st and st ~= 'completed' and st ~= 'failed'
end

-- A finished job sent back to waiting (requeue.lua) holding dedup id `did` ('dd') holds
-- it again, unless another job took it meanwhile: then that one keeps it, and this job
-- runs without it ('dd' goes, so that it frees nothing).
local function dedup_reclaim(jk, id, did)
  local dk = DEDUP_PREFIX .. did
  local cur = redis.call('GET', dk)
  if cur and cur ~= id and (redis.call('PTTL', dk) > 0 or unfinished(cur)) then
    redis.call('HDEL', jk, 'dd')
    return
  end
  redis.call('SET', dk, id)
  redis.call('ZADD', DEDUPS, '+inf', did)
end

-- Claims dedup `spec` ("ttl_ms|flags|dedup id") for new job `id`. Returns the id of the
-- job that holds it already (nothing is added then), else nil and the 'dd' field value
-- for the new job (nil with a ttl). `kept`: the add's name, options, priority and group,
-- for flag k.
local dedups_trimmed = false
local function dedup_claim(spec, id, now, delay, data, kept)
  local ttl_s, flags, did = string.match(spec, '^(%d+)|(%a*)|(.*)$')
  local ttl = tonumber(ttl_s)
  if not dedups_trimmed then
    -- Keys with a ttl leave the listing once expired (bounded by the adds that made them).
    dedups_trimmed = true
    redis.call('ZREMRANGEBYSCORE', DEDUPS, '-inf', int_str(now))
  end
  local dk = DEDUP_PREFIX .. did
  local cur = redis.call('GET', dk)
  if cur and ttl == 0 and not unfinished(cur) then cur = nil end
  if cur then
    local jk = JP .. cur
    local st = flags ~= '' and redis.call('HGET', jk, 'st')
    local nk = BASE .. ':dedup-next:' .. did
    if string.find(flags, 'k', 1, true) and redis.call('PTTL', dk) == -1 and (st == 'active'
        or st == 'held' or redis.call('EXISTS', nk) == 1) then
      -- Kept, the last one winning, for when the job finishes (base.lua release_dedup). An
      -- add made while the job waits replaces one kept before (the last add still runs
      -- last). One made while a worker holds the job (it may have started, its start note
      -- on the way) is kept provisionally, 'ht' naming the hold: handed back unstarted, the
      -- job was waiting, the add a duplicate of it, and it goes (finish.lua 'h').
      local ht = ''
      if st == 'held' then
        local had = redis.call('HMGET', nk, 'n', 'ht')
        if not had[1] or (had[2] or '') ~= '' then ht = redis.call('HGET', jk, 'tok') or '' end
      end
      redis.call('HSET', nk, 'n', kept[1], 'd', data, 'o', kept[2], 'p', kept[3],
                 'dl', int_str(delay), 'g', kept[4], 'ht', ht)
      emit('ev', 'deduplicated', 'id', cur, 'dup', id, 'dedup', did, 'kept', '1')
      return cur, nil
    end
    if string.find(flags, 'r', 1, true) and st == 'delayed' then
      -- Debounce: the last data wins and the delay starts again (this add's; none: due
      -- now, as a new job without a delay would be); never an active job.
      redis.call('HSET', jk, 'd', data)
      if delay > 0 then
        enqueue_delayed(jk, cur, now + delay)
      else
        redis.call('ZREM', K.delayed, cur)
        redis.call('ZREM', BASE .. ':delayed-ahead', cur)
        enqueue_ready(jk, cur, job_priority(jk))
        emit('ev', 'waiting', 'id', cur)
      end
      emit('ev', 'debounced', 'id', cur, 'dup', id)
    end
    -- (A claim without a ttl has none to restart: it lasts as long as its job.)
    if string.find(flags, 'e', 1, true) and redis.call('PTTL', dk) > 0 then
      redis.call('PEXPIRE', dk, ttl)
      redis.call('ZADD', DEDUPS, int_str(now + ttl), did)
    end
    emit('ev', 'deduplicated', 'id', cur, 'dup', id, 'dedup', did)
    return cur, nil
  end
  if ttl > 0 then
    redis.call('SET', dk, id, 'PX', ttl)
    redis.call('ZADD', DEDUPS, int_str(now + ttl), did)
    return nil, nil
  end
  redis.call('SET', dk, id)
  redis.call('ZADD', DEDUPS, '+inf', did)
  redis.call('HSET', K.meta, 'xr', '1')
  return nil, did
end
