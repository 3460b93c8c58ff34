-- Job schedulers (see minique/scheduler.py for the model and the key layout).
--
-- Keys of a scheduler <sid>, all inside the queue's hash tag (derived from K.meta):
--   {p:q}:schedulers          ZSET  sid -> next fire ms (+inf once ended or waiting for a refill)
--   {p:q}:schedulers:refill   ZSET  sid -> ms when its cron time list ran low (Python refills it)
--   {p:q}:sch:h:<sid>         HASH  spec, template and state (see SCH_FIELDS)
--   {p:q}:sch:t:<sid>         ZSET  precomputed cron fire times (ms), member = score
-- A firing is an ordinary job with id "sched:<sid>:<gen>:<fire_ms>" (a form custom ids may not
-- take: keys.FIRING_ID_PREFIX) and fields
-- sch = sid, sft = fire ms. The hash's 'nid' names the one firing that is pending (created,
-- not yet taken); only taking exactly that job advances the schedule, so retries, stale
-- generations and firings of removed schedulers never produce a second next job.

-- BASE, BASE .. ':schedulers', BASE .. ':schedulers:refill' (set by begin_call).
local SCH_BASE, SCH_INDEX, SCH_REFILL
-- Refill a cron scheduler's time list once fewer than this many times are left.
local SCH_LOW = 16

local function sch_hash_key(sid) return SCH_BASE .. ':sch:h:' .. sid end
local function sch_times_key(sid) return SCH_BASE .. ':sch:t:' .. sid end

local SCH_FIELDS = {'nid', 'nxt', 'kind', 'every', 'anchor', 'start', 'end', 'limit', 'catch',
                    'ic', 'gen', 'last', 'n', 'd', 'o', 'p', 'exhausted', 'ended', 'safter', 'jo',
                    'lid'}

local function sch_load(sk)
  local v = redis.call('HMGET', sk, unpack(SCH_FIELDS))
  local h = {}
  -- A missing field reads as '' (HMGET gives false), so comparisons never meet a boolean.
  for i, f in ipairs(SCH_FIELDS) do h[f] = v[i] or '' end
  return h
end

-- Stores `n` cron fire times (the call's ARGV[first + 1 .. first + n]) in a scheduler's
-- time list.
local function sch_store_times(tk, first, n)
  if n <= 0 then return end
  local args = {}
  for i = 1, n do
    args[#args + 1] = CALL_ARGV[first + i]
    args[#args + 1] = CALL_ARGV[first + i]
  end
  redis.call('ZADD', tk, unpack(args))
end

local function sch_num(v, default)
  local n = tonumber(v)
  if n == nil then return default end
  return n
end

-- The first fire time strictly after `t`, or nil (ended, or a cron list that needs a refill).
-- For cron, times at or before `t` are dropped from the list: they can never be used again.
local function sch_next_after(h, tk, t)
  local fire
  if h.kind == 'every' then
    local anchor, step = tonumber(h.anchor), tonumber(h.every)
    if t < anchor then
      fire = anchor
    else
      fire = anchor + (math.floor((t - anchor) / step) + 1) * step
    end
  else
    redis.call('ZREMRANGEBYSCORE', tk, '-inf', t)
    local head = redis.call('ZRANGE', tk, 0, 0)
    if not head[1] then return nil end
    fire = tonumber(head[1])
  end
  local stop = sch_num(h['end'], -1)
  if stop >= 0 and fire > stop then return nil end
  return fire
end

local function sch_unlink_pending(nid, reason)
  -- Only a firing that has not started can be withdrawn; an active one belongs to its worker.
  if not nid or nid == '' then return end
  local jk = JP .. nid
  local st = redis.call('HGET', jk, 'st')
  if st == 'delayed' or st == 'waiting' then
    unlink_job(jk, nid)
    delete_job_keys(nid)
    emit('ev', 'removed', 'id', nid, 'prev', st, 'reason', reason)
  end
end

-- Marks the scheduler as having no pending firing: ended for good, or (cron) starved until
-- Python refills its time list.
local function sch_idle(sk, sid, h, ended)
  redis.call('HSET', sk, 'nid', '', 'nxt', '', 'ended', ended and '1' or '0')
  redis.call('ZADD', SCH_INDEX, '+inf', sid)
  h.nid, h.ended = '', ended and '1' or '0'
  if not ended and h.kind == 'cron' then
    redis.call('ZADD', SCH_REFILL, 'NX', 0, sid)
  end
end

-- Creates the next firing: the first fire time after `after`, unless the limit or the end
-- date stops the scheduler. Returns the new job id or ''.
local function sch_advance(sk, tk, sid, h, after, now)
  local limit = sch_num(h.limit, 0)
  if limit > 0 and sch_num(h.ic, 0) >= limit then
    sch_idle(sk, sid, h, true)
    return ''
  end
  local fire = sch_next_after(h, tk, after)
  if h.kind == 'cron' and h.exhausted ~= '1' and redis.call('ZCARD', tk) < SCH_LOW then
    redis.call('ZADD', SCH_REFILL, 'NX', now, sid)
  end
  if not fire then
    -- A cron list that ran dry is not the end unless the end date has passed. 'safter'
    -- remembers where the schedule stood, so a refill resumes from there: after a catch-up
    -- run (after = now) it must not make a second one for the same downtime.
    local stop = sch_num(h['end'], -1)
    local ended = h.kind == 'every' or (stop >= 0 and after >= stop) or h.exhausted == '1'
    redis.call('HSET', sk, 'safter', string.format('%d', after))
    sch_idle(sk, sid, h, ended)
    return ''
  end
  local id = 'sched:' .. sid .. ':' .. h.gen .. ':' .. string.format('%d', fire)
  local jk = JP .. id
  -- The id is unique to (generation, fire time): if it exists, this firing was made already.
  if redis.call('EXISTS', jk) == 0 then
    local prio = sch_num(h.p, 0)
    redis.call('HSET', jk, 'n', h.n, 'd', h.d, 'o', h.o, 'p', prio, 'ts', now, 'atm', 0,
               'ats', 0, 'sch', sid, 'sft', fire)
    -- job_options={"group": ...}: the firing joins that group (includes/groups.lua).
    if h.jo ~= '' then
      local ok, jo = pcall(cmsgpack.unpack, h.jo)
      if ok and type(jo) == 'table' and type(jo.group) == 'string' then
        redis.call('HSET', jk, 'g', jo.group)
      end
    end
    emit('ev', 'added', 'id', id, 'name', h.n, 'scheduler', sid)
    if fire <= now then
      enqueue_ready(jk, id, prio)
      emit('ev', 'waiting', 'id', id)
    else
      enqueue_delayed(jk, id, fire, nil, prio)
      emit('ev', 'delayed', 'id', id, 'delay', fire - now)
    end
  end
  redis.call('HSET', sk, 'nid', id, 'nxt', fire, 'ended', '0')
  redis.call('ZADD', SCH_INDEX, fire, sid)
  h.nid = id
  return id
end

-- Called by take_jobs for every job it moves to active. For the pending firing of a scheduler
-- it records the run and creates the next firing in the same script, so no separate scheduler
-- process is needed and each fire time yields at most one job.
--
-- Missed fire times: the firing was taken after the *next* fire time had passed too (workers
-- were down, or the queue is behind by more than one period). The next firing is then the
-- first fire time after `now`: the missed ones are dropped, whatever the policy. The policy
-- decides the late firing itself: "once" runs it (one catch-up run), "skip" drops it when
-- take_jobs lets the hook do so (`can_drop`; the hook then deletes the job and returns true,
-- and take_jobs must not hand it out). `sid` may be passed by a caller that has already read
-- the job's 'sch' field, which saves a read for every job.
local function scheduler_on_take(jk, id, now, can_drop, sid)
  sid = sid or redis.call('HGET', jk, 'sch')
  if not sid then return false end
  local sk = sch_hash_key(sid)
  local h = sch_load(sk)
  if h.nid ~= id then return false end  -- not the pending firing: retry, stale, or removed
  local tk = sch_times_key(sid)
  local fire = tonumber(redis.call('HGET', jk, 'sft'))
  local on_time_next = sch_next_after(h, tk, fire)
  local missed = on_time_next ~= nil and on_time_next <= now
  local drop = missed and can_drop and h.catch == 'skip'
  if drop then
    redis.call('HINCRBY', sk, 'skipped', 1)
  else
    h.ic = redis.call('HINCRBY', sk, 'ic', 1)
    -- 'lid': the last SCH_RECENT firings taken, newest first (ids hold no whitespace),
    -- which workers may hold ahead of their start (waiting, to the user): a removal or an
    -- upsert treats those as waiting firings (remove_scheduler.lua, upsert_scheduler.lua).
    -- A scheduler that fires faster than a worker's hold can have several held at once.
    local recent = {id}
    for fid in string.gmatch(h.lid, '%S+') do
      if #recent == 8 then break end
      recent[#recent + 1] = fid
    end
    redis.call('HSET', sk, 'last', fire, 'lrun', now, 'lid', table.concat(recent, ' '))
  end
  sch_advance(sk, tk, sid, h, missed and now or fire, now)
  if drop then
    redis.call('ZREM', K.active, id)  -- in case the caller had already marked it active
    delete_job_keys(id)
    emit('ev', 'removed', 'id', id, 'reason', 'missed firing (catch_up=skip)')
    return true
  end
  return false
end
