-- Groups (docs/guide/groups.md): jobs added with a group wait in the group's own sorted set
-- instead of the queue's ready stream or priority set, and workers take them round-robin
-- across the groups that may start a job now, with a concurrency and a sliding-window rate
-- limit per group. Included by base.lua (its enqueue functions route grouped jobs here).
--
-- Keys, all under the queue's hash tag:
--   {p:q}:gready     list of groups that may start a job now (the round-robin), each once
--   {p:q}:gsleep     zset group -> ms when it may start again (rate limit, throttle)
--   {p:q}:groups     zset group -> waiting jobs (the index get_groups pages, busiest first)
--   {p:q}:gactive    zset group -> active jobs, only groups with some running: the one
--                    count of a group's active jobs (ZINCRBY moves it and returns it)
--   {p:q}:gpaused    zset group -> ms it was paused at, only paused groups
--   {p:q}:g:<g>      hash: c (concurrency), lm/ld (limiter max / window ms), p (paused),
--                    rl (throttled until ms), q (scheduled: 'r' in gready, 's' in gsleep;
--                    a group is in at most one of them, at most once)
--   {p:q}:gw:<g>     zset of the group's waiting jobs, scored like the queue's priority set
--                    (front band < 2^32 < priorities < return band 2^54 < FIFO band 2^55)
--   {p:q}:gl:<g>     zset of the group's starts in its limiter window
--   {p:q}:gheldn     hash: bucket of 100 tokens (the token less its last two digits, '0'
--                    for a shorter one: see group_holds_count) -> grouped jobs with
--                    a token in it that a worker holds and that have not started, gone
--                    back or ended as far as Redis knows (take.lua adds, finish.lua and
--                    stalled.lua subtract: group_holds_count). A held job may have started
--                    on its worker already: its start note comes with the worker's next call.
--   {p:q}:gheld      zset of those buckets (score = bucket): the lowest comes first
--   {p:q}:gheldg:<b> set of the groups that had a job held in bucket b (kept while the
--                    bucket counts any job, so it may name a group whose job there ended)
-- meta 'gdc', 'gdm', 'gdd' are the defaults (concurrency, limiter max, window ms) of groups
-- without settings of their own; meta 'gwn' counts every group's waiting jobs.
-- meta 'gx' marks a queue where some group has had settings, a pause or a throttle, or
-- that has group defaults (set_group.lua, group_throttle), kept from then on. Until then
-- every group is unlimited and never sleeps: a turn needs no read of the group's hash, a
-- release no read unless the group is left with nothing running (the short path below).
-- Every way a job leaves active calls group_release (finish.lua, stalled.lua), so the
-- group's gactive count always equals its jobs in the active set
-- (tests/test_state_machine.py).
-- Held (prefetched) grouped jobs come only from groups without any limit (their own or a
-- default): a held job counts against nothing until it starts, as for the queue's global
-- concurrency. It counts as active from its start ('s' in finish.lua), and every change of a
-- group's settings, a group pause and a throttle make workers hand held jobs back.
-- A concurrency set on a group (or as the default) while some grouped job is held may find
-- one of them started on its worker, its start note still on the way: a take one at a time
-- would have counted it. set_group.lua then marks the group ('hf') or the defaults (meta
-- 'ghf') with the token counter at the change, and the group starts nothing while a bucket
-- of tokens from before the change still counts a held job and lists the group: it sleeps
-- 20 ms at a time meanwhile (workers hand held jobs back at once, so this lasts a call or
-- two; a dead worker's until its lease expires). Other groups' held jobs hold it up only
-- when they share a bucket with one of its own.
-- BASE .. ':gready', ':gsleep', ':groups', ':gactive', ':gpaused' (set by begin_call).
local GQ, GS, GI, GA, GP
local GFIFO_BAND = 36028797018963968  -- 2^55; steps of 8 are exact there
-- Set when a take gave up on a round-robin still full of groups it could not take from
-- (emptied by drain/clean/remove, paused, full): the caller must fetch again at once.
local groups_stale_left = false
-- The bucket of 100 tokens a token is in: the token less its last two digits, '0' when
-- that is empty. A string operation: no number conversion.
local function token_bucket(tok)
  local b = string.sub(tok, 1, -3)
  return b ~= '' and b or '0'
end
local function gkey(g) return BASE .. ':g:' .. g end
local function gwait(g) return BASE .. ':gw:' .. g end
local function gwin(g) return BASE .. ':gl:' .. g end
-- Adds `counts` (bucket -> jobs, negative to subtract) to the held grouped jobs' counts,
-- and for added jobs their groups (`groups`: bucket -> list of group ids) to the bucket's
-- set. One call or three per bucket, and a call's jobs share one or two buckets (their
-- tokens follow on). A token's bucket is token_bucket (below).
local function group_holds_count(counts, groups)
  local hkey, zkey = BASE .. ':gheldn', BASE .. ':gheld'
  for bs, n in pairs(counts) do
    local left = redis.call('HINCRBY', hkey, bs, n)
    if left <= 0 then
      redis.call('HDEL', hkey, bs)
      redis.call('ZREM', zkey, bs)
      redis.call('DEL', BASE .. ':gheldg:' .. bs)
    elseif n > 0 then
      redis.call('ZADD', zkey, bs, bs)
      call_batched('SADD', BASE .. ':gheldg:' .. bs, groups[bs])
    end
  end
end
-- True while no group of the queue has had settings, a pause or a throttle (meta 'gx').
-- (set_group.lua and group_throttle set the mark; a Lua chunk has room for 200 locals, so
-- the few lines are written out where used rather than made functions.)
local function groups_plain() return not meta_marks().gx end

local gdefaults = nil
-- A group's limits: its own settings, else the queue's group defaults (nil = no limit).
local function group_limits(c, lm, ld)
  if not gdefaults then gdefaults = redis.call('HMGET', K.meta, 'gdc', 'gdm', 'gdd') end
  local conc = tonumber(c) or tonumber(gdefaults[1])
  local max, window = tonumber(lm), tonumber(ld)
  if not max then max, window = tonumber(gdefaults[2]), tonumber(gdefaults[3]) end
  return conc, max, window
end

-- Puts a group in the round-robin if it has waiting jobs and may start one now, or to
-- sleep until it may; does nothing for a paused group, one at its concurrency (its next
-- release schedules it) or one already scheduled. `h` is the group's c, p, q, rl when
-- the caller has read them, `a` its active count when known.
local function group_schedule(g, h, a)
  local gk = gkey(g)
  h = h or redis.call('HMGET', gk, 'c', 'p', 'q', 'rl')
  if h[2] or h[3] then return end
  if redis.call('EXISTS', gwait(g)) == 0 then return end
  local conc = group_limits(h[1])
  if conc and (a or tonumber(redis.call('ZSCORE', GA, g)) or 0) >= conc then return end
  local rl = tonumber(h[4])
  if rl and rl > now_ms() then
    redis.call('ZADD', GS, int_str(rl), g)
    redis.call('HSET', gk, 'q', 's')
    return
  end
  redis.call('RPUSH', GQ, g)
  redis.call('HSET', gk, 'q', 'r')
  wake()
end

-- A grouped job becomes waiting in its group at `score` (see the bands above; nil = the
-- FIFO band).
local function group_enqueue(g, jk, id, score, fields)
  if not score then
    local seq = redis.call('HINCRBY', K.meta, 'gs', 1) % 1099511627776
    score = int_str(GFIFO_BAND + 8 * seq)
  end
  redis.call('ZADD', gwait(g), score, id)
  redis.call('ZINCRBY', GI, 1, g)
  -- Kept in step with the call's meta snapshot: a job made waiting in its group by this
  -- call (fallen due, promoted) must be seen by the call's own take.
  meta_set('gwn', redis.call('HINCRBY', K.meta, 'gwn', 1))
  write_job(jk, fields, 'st', 'waiting', 'sid', '')
  group_schedule(g)
end

-- A group with no job waiting or active, no settings, not paused, scheduled nowhere and
-- not throttled is forgotten: it leaves the index (get_groups lists no empty groups).
local function group_forget_if_idle(g, a)
  local gk = gkey(g)
  local h = redis.call('HMGET', gk, 'c', 'p', 'q', 'rl', 'lm')
  if h[1] or h[2] or h[3] or h[5] or (tonumber(h[4]) or 0) > now_ms() then return end
  if (a or tonumber(redis.call('ZSCORE', GA, g)) or 0) > 0 then return end
  if redis.call('EXISTS', gwait(g)) == 1 then return end
  redis.call('DEL', gk)
  redis.call('ZREM', GI, g)
  redis.call('ZREM', GA, g)
end

-- A waiting grouped job leaves its group's set (removed, drained, cleaned). Returns 1 if
-- it was there.
local function group_unlink(g, id)
  if redis.call('ZREM', gwait(g), id) == 0 then return 0 end
  local left = tonumber(redis.call('ZINCRBY', GI, -1, g))
  redis.call('HINCRBY', K.meta, 'gwn', -1)
  if left <= 0 then group_forget_if_idle(g) end
  return 1
end

-- A job of the group left active: its slot comes back. An idle group without settings
-- of its own is forgotten. (One call while others of the group run on in a queue whose
-- groups are plain; three when the group is scheduled already, the common case.)
local function group_release(g)
  local a = tonumber(redis.call('ZINCRBY', GA, -1, g))
  if a <= 0 then redis.call('ZREM', GA, g); a = 0 end
  if groups_plain() then
    -- No limit, pause or sleep anywhere: a group with waiting jobs is in the round-robin
    -- already, so only one left with nothing running may have to be forgotten.
    if a == 0 then group_forget_if_idle(g, 0) end
    return
  end
  local gk = gkey(g)
  local h = redis.call('HMGET', gk, 'c', 'p', 'q', 'rl', 'lm')
  -- Scheduled already (the common case): its turn in the round-robin, or its wake-up,
  -- schedules it again or forgets it when idle.
  if h[3] then return end
  group_schedule(g, h, a)
  if a == 0 and not (h[1] or h[2] or h[5]) and redis.call('EXISTS', gwait(g)) == 0
      and (tonumber(h[4]) or 0) <= now_ms() then
    redis.call('DEL', gk)
    redis.call('ZREM', GI, g)
  end
end

-- A held job of the group started: it takes a slot now (released like any active job).
-- The group may have been forgotten when its last job was taken to hold: a group with a
-- job running is in the index until its last release, so it comes back (score: 0 waiting).
local function group_start(g)
  redis.call('ZINCRBY', GA, 1, g)
  redis.call('ZADD', GI, 'NX', 0, g)
end

-- The processor said the group is throttled (GroupRateLimited): it starts nothing until
-- `until_ms`; a longer throttle in force is kept.
local function group_throttle(g, until_ms)
  if not meta_marks().gx then  -- takes read each group's settings from now on
    redis.call('HSET', K.meta, 'gx', '1')
    meta_set('gx', '1')
  end
  local gk = gkey(g)
  local h = redis.call('HMGET', gk, 'rl', 'q')
  if (tonumber(h[1]) or 0) >= until_ms then return end
  redis.call('HSET', gk, 'rl', int_str(until_ms))
  if h[2] == 's' then redis.call('ZADD', GS, int_str(until_ms), g) end
end

-- Groups whose sleep is over go back to the round-robin (at most 100 per call).
local function groups_wake_due(now)
  if groups_plain() then return end
  local due = redis.call('ZRANGEBYSCORE', GS, '-inf', now, 'LIMIT', 0, 100)
  if #due == 0 then return end
  redis.call('ZREM', GS, unpack(due))
  for _, g in ipairs(due) do
    redis.call('HDEL', gkey(g), 'q')
    group_schedule(g)
    -- Its jobs were removed while it slept: nothing keeps it.
    group_forget_if_idle(g)
  end
end

-- The earliest time a sleeping group may start a job (ms), or nil.
local function groups_next_wake()
  if groups_plain() then return nil end
  local first = redis.call('ZRANGE', GS, 0, 0, 'WITHSCORES')
  return first[2] and tonumber(first[2]) or nil
end

-- Takes up to `n` grouped jobs, one per group per turn of the round-robin, into ids /
-- scores / gids (appended; gids: the job's group, so the take need not read it from the
-- hash; a job not `to_hold` takes a slot of it). Every group popped is
-- either given a job (and goes to the tail if it may start another), put to sleep (rate
-- limit) or dropped (paused, at its concurrency, empty): at most 2n + 16 pops per call.
-- `to_hold`: jobs to hold, taken only from groups without limits (the others go to the
-- tail untouched).
local function take_grouped(now, n, ids, scores, gids, to_hold)
  local call, tonum, limits = redis.call, tonumber, group_limits
  local prefix, wprefix = BASE .. ':g:', BASE .. ':gw:'
  local taken, pops = 0, 0
  -- Plain groups (no settings, pause or throttle anywhere in the queue): nothing to read.
  local none = {}
  local plain = groups_plain()
  local held_min = nil  -- the lowest token of a held grouped job (read once, if needed)
  local ghf = nil  -- meta 'ghf' (read once, if needed)
  local max_pops = 2 * n + 16
  while taken < n and pops < max_pops do
    -- The next groups of the round-robin come off its head in one call, as many as jobs
    -- are still wanted (each gives at most one); those that may start another job go back
    -- to the tail in one call, in the same order (the common case), and the others leave.
    -- A round-robin shorter than that comes round again in the next turn of this loop.
    local turn = call('LPOP', GQ, int_str(math.min(n - taken, max_pops - pops)))
    if not turn then break end
    local back = {}
    if plain then
      -- No limit, pause or sleep anywhere: each group gives its next job, and stays while
      -- it has more (the loop below, without its reads and checks).
      -- The index's counts (a group's score is its waiting jobs: its set's size) go in one
      -- ZADD for the turn, each read with a ZCARD: a ZINCRBY per job (its reply a double,
      -- formatted and parsed back) cost ~2k instructions a job more in all. A group comes
      -- off the round-robin at most once per turn.
      local counts = {}
      for _, g in ipairs(turn) do
        pops = pops + 1
        local popped = call('ZPOPMIN', wprefix .. g)
        if popped[1] then
          taken = taken + 1
          ids[#ids + 1] = popped[1]; scores[#ids] = popped[2]; gids[#ids] = g
          if not to_hold then call('ZINCRBY', GA, 1, g) end
          local left = call('ZCARD', wprefix .. g)
          if left > 0 then
            back[#back + 1] = g
            -- (As a string from the table: a Lua number argument is formatted with %.17g.)
            counts[#counts + 1] = int_str(left); counts[#counts + 1] = g
          elseif not to_hold or call('ZSCORE', GA, g) then
            call('HDEL', prefix .. g, 'q')  -- a job runs: its last release forgets the group
            counts[#counts + 1] = '0'; counts[#counts + 1] = g
          else
            -- Nothing waiting or running, and no settings here: forgotten now, as no release
            -- may come (a held job that starts and ends between two calls takes no slot).
            call('DEL', prefix .. g)
            call('ZREM', GI, g)
          end
        else
          call('HDEL', prefix .. g, 'q')
          group_forget_if_idle(g)
        end
      end
      if counts[1] then call('ZADD', GI, unpack(counts)) end
      turn = none
    end
    for _, g in ipairs(turn) do
      pops = pops + 1
      local gk = prefix .. g
      -- h: c, p, rl, lm, ld, hf
      local h = plain and none or call('HMGET', gk, 'c', 'p', 'rl', 'lm', 'ld', 'hf')
      local conc, max, window = nil, nil, nil
      if not plain then conc, max, window = limits(h[1], h[4], h[5]) end
      local a = conc and tonum(call('ZSCORE', GA, g)) or 0
      local sleep_until = nil
      -- Held jobs from before a concurrency was set may have started (see the top): settle.
      if conc and not h[6] and ghf == nil then ghf = call('HGET', K.meta, 'ghf') or false end
      local hf = conc and (h[6] or ghf)
      if hf then
        if not held_min then
          -- The lowest token that may be held: the start of the lowest bucket.
          local first = call('ZRANGE', BASE .. ':gheld', 0, 0, 'WITHSCORES')
          held_min = first[2] and tonum(first[2]) * 100 or math.huge
        end
        local settling = held_min <= tonum(hf)
        if settling then
          -- Only buckets from before the change that list this group hold it up (at most
          -- 50 looked at: past them it settles on, as without the lists).
          local buckets = call('ZRANGEBYSCORE', BASE .. ':gheld', '-inf',
                               math.floor(tonum(hf) / 100), 'LIMIT', 0, 50)
          settling = #buckets >= 50
          for _, b in ipairs(buckets) do
            if settling then break end
            settling = call('SISMEMBER', BASE .. ':gheldg:' .. b, g) == 1
          end
        end
        if settling then
          sleep_until = now + 20  -- settling: a call or two (see the top)
        elseif h[6] then
          -- Settled for good: a group with a concurrency is never held after the change.
          call('HDEL', gk, 'hf')
        elseif held_min > tonum(hf) then
          -- Nothing held from before the defaults changed, for any group.
          call('HDEL', K.meta, 'ghf')
          ghf = false
        end
      end
      local wk = (max and max > 0) and gwin(g) or nil
      if to_hold and not h[2] and (conc or (max and max > 0)) then
        back[#back + 1] = g  -- stays, untouched
      elseif not h[2] and not (conc and a >= conc) then
        local rl = tonum(h[3])
        if sleep_until then
          -- settling (above)
        elseif rl and rl > now then
          sleep_until = rl
        elseif max and max > 0 then
          call('ZREMRANGEBYSCORE', wk, '-inf', now - window)
          if call('ZCARD', wk) >= max then
            local oldest = call('ZRANGE', wk, 0, 0, 'WITHSCORES')
            sleep_until = math.max(now + 1, tonum(oldest[2]) + window)
          end
        end
        if sleep_until then
          call('ZADD', GS, int_str(sleep_until), g)
          call('HSET', gk, 'q', 's')
        else
          local popped = call('ZPOPMIN', gwait(g))
          if popped[1] then
            taken = taken + 1
            ids[#ids + 1] = popped[1]; scores[#ids] = popped[2]; gids[#ids] = g
            if not to_hold then a = tonum(call('ZINCRBY', GA, 1, g)) end
            local left = tonum(call('ZINCRBY', GI, -1, g))
            if max and max > 0 then
              call('ZADD', wk, int_str(now), popped[1] .. '|' .. int_str(now))
              call('PEXPIRE', wk, int_str(window))
            end
            if left <= 0 or (conc and a >= conc) then
              call('HDEL', gk, 'q')
              -- Empty: forgotten unless it keeps settings or runs a job (its last release
              -- forgets it then); no release may come for a job taken to hold.
              if left <= 0 then group_forget_if_idle(g, conc and a or nil) end
            else
              back[#back + 1] = g
            end
          else
            call('HDEL', gk, 'q')
            group_forget_if_idle(g)
          end
        end
      else
        call('HDEL', gk, 'q')
      end
    end
    call_batched('RPUSH', GQ, back)
  end
  if taken > 0 then redis.call('HINCRBY', K.meta, 'gwn', -taken) end
  -- Stale entries (paused or full groups) can fill the pops: others wait behind them.
  if taken < n and pops >= max_pops and not to_hold then
    groups_stale_left = true
    wake()
  end
end
