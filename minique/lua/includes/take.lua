--@include scheduler
-- Fetch path shared by fetch.lua and finish.lua: promote due delayed jobs, honour pause and
-- rate limits, then move up to `count` ready jobs to active with a fresh fencing token.

local HEADER_LEN = 10  -- (minique/worker.py HEADER)
local JOB_FIELDS = 11  -- per job in the reply (minique/worker.py JOB_FIELDS)

local function promote_due(now, limit)
  local ids = redis.call('ZRANGEBYSCORE', K.delayed, '-inf', now * DELAY_SHIFT + DELAY_SHIFT - 1,
                         'LIMIT', 0, limit)
  if #ids == 0 then return 0 end
  for _, id in ipairs(ids) do
    local jk = JP .. id
    local prio = job_priority(jk)
    enqueue_ready(jk, id, prio)
    -- Ahead of held jobs (base.lua enqueue_delayed): its listing ends here.
    if prio ~= 0 then redis.call('ZREM', BASE .. ':delayed-ahead', id) end
    emit('ev', 'waiting', 'id', id)
  end
  redis.call('ZREM', K.delayed, unpack(ids))
  return #ids
end

local function read_stream(count)
  -- NOACK: the active set (with its lease) takes over from the stream at once, so the
  -- group's pending list would only cost an insert now and an XACK later.
  local res = redis.pcall('XREADGROUP', 'GROUP', 'g', 'w', 'COUNT', count, 'NOACK',
                          'STREAMS', K.ready, '>')
  if type(res) == 'table' and res.err then
    if not string.find(res.err, 'NOGROUP') then error(res.err) end
    if redis.call('EXISTS', K.ready) == 0 then return {}, {} end
    -- The stream was created by an add (or re-created after a drain); '0' reads it all.
    redis.call('XGROUP', 'CREATE', K.ready, 'g', '0')
    res = redis.call('XREADGROUP', 'GROUP', 'g', 'w', 'COUNT', count, 'NOACK',
                     'STREAMS', K.ready, '>')
  end
  if not res then return {}, {} end
  local entries = res[1][2]
  local ids, bare = {}, {}
  for i, e in ipairs(entries) do
    local fv = e[2]
    ids[i] = fv[2]
    bare[i] = fv[1] == 'b'
  end
  if #entries > 0 then
    -- Entries are read in id order and every older one was read (and trimmed) before, so
    -- trimming below the next id drops exactly what was just read: one ordered pass over a
    -- node, where XDEL would search the node once per id.
    local ms, seq = string.match(entries[#entries][1], '^(%d+)-(%d+)$')
    redis.call('XTRIM', K.ready, 'MINID', ms .. '-' .. (tonumber(seq) + 1))
  end
  return ids, bare
end

-- Sliding-window log limiter: a start is allowed only if fewer than `max` starts happened
-- in the last `window_ms`. Returns how many may start now and, if none, how long to wait.
local function limiter_allowance(now, max, window_ms, want)
  if max <= 0 then return want, 0 end
  redis.call('ZREMRANGEBYSCORE', K.window, '-inf', now - window_ms)
  local used = redis.call('ZCARD', K.window)
  local allowed = max - used
  if allowed <= 0 then
    local oldest = redis.call('ZRANGE', K.window, 0, 0, 'WITHSCORES')
    return 0, math.max(1, tonumber(oldest[2]) + window_ms - now)
  end
  return math.min(allowed, want), 0
end

-- When nothing is handed out, the caller blocks: it needs the next due time of a delayed job
-- and the wake stream's last id.
local function with_wait_info(out)
  local nd = redis.call('ZRANGE', K.delayed, 0, 0, 'WITHSCORES')
  if nd[2] then out[3] = math.floor(tonumber(nd[2]) / DELAY_SHIFT) end
  -- A sleeping group (rate limited, throttled) is due like a delayed job.
  local gw = meta_marks().gwn and groups_next_wake()
  if gw and (out[3] < 0 or gw < out[3]) then out[3] = gw end
  -- The round-robin still names groups this call had no budget to pass: due now. (The
  -- wake-up it posted is already before the id returned below, so it would not count.)
  if groups_stale_left then out[3] = out[5] end
  local last = redis.call('XREVRANGE', K.wake, '+', '-', 'COUNT', 1)
  out[4] = last[1] and last[1][1] or '0-0'
  return out
end

-- Returns {status, info, next_due, wake_id, now, the queue's limit (its global concurrency;
-- -1 for a global rate limit alone; 0 = none: a worker holds nothing while it is not 0),
-- control version, hold granted (ms, 0 = none), the start time of its active jobs (ms),
-- the queue's held version (meta 'hv': see finish.lua on trusted completions), jobs...}; each job is JOB_FIELDS fields (id, token, name, data, options, attempts made,
-- attempts started, added at, priority, stalled count with '!' after it for a suspect job,
-- group), the first `count` of them active, the rest held. (A per-job start time and
-- suspect mark had cost ~1k instructions a job each in the reply.)
-- status: 0 ok, 1 paused, 2 rate limited (info = ms to wait),
-- 3 gave way to jobs held elsewhere (info = ms to wait at most for them; see below).
--
-- Holding: a worker whose jobs are short asks for `hold` jobs beyond its free slots. They
-- go to the held set (waiting, to everyone else) with a lease, and the worker may start
-- them only until now + hold_ms; the same grant renews the hold of the jobs it already
-- holds. No hold is granted while the queue is paused, rate limited, or under a global
-- concurrency limit (held jobs would sit on its allowance). The longest grant is kept in
-- meta 'hu', so a control change (includes/base.lua control_changed) can wait it out.
local function take_jobs(now, count, lease_ms, worker, lim_max, lim_window, promote_limit,
                         hold, hold_ms)
  promote_due(now, promote_limit)
  local m = meta_marks()
  local gconc = tonumber(m.gconc)
  if m.glim then
    -- The queue's own rate limit (set_global_rate_limit.lua) wins over the worker's, as
    -- BullMQ's global rate limit does; both count in the same log of starts.
    local gmax, gwin = string.match(m.glim, '^(%d+):(%d+)$')
    lim_max, lim_window = tonumber(gmax), tonumber(gwin)
  end
  local out = {0, 0, -1, '', now, gconc or (m.glim and -1) or 0, m.cv or '0', 0, now,
               m.hv or '0'}
  if m.paused then
    out[1] = 1
  else
    local pttl = redis.call('PTTL', K.pause_until)
    if pttl > 0 then
      out[1] = 2; out[2] = pttl
    elseif count > 0 then
      local allowed, wait = limiter_allowance(now, lim_max, lim_window, count)
      -- Global concurrency: at most 'gconc' jobs active across every worker of the queue.
      if gconc and allowed > 0 then
        -- Held jobs count too: none is held under a global limit, so those left are from
        -- before it was set, and any of them may have started on its worker (its start
        -- note still on the way), which a take one at a time would have counted.
        allowed = math.min(allowed, gconc - redis.call('ZCARD', K.active)
                           - redis.call('ZCARD', K.held) - redis.call('ZCARD', K.held_removed))
        if allowed <= 0 then allowed = 0; wait = 100 end
      end
      if allowed == 0 then
        out[1] = 2; out[2] = wait
      else
        count = allowed
      end
    end
  end
  -- Giving way (hold < 0): an idle taker that holds nothing (a ManualWorker, a worker with
  -- prefetch on or off, whose last take found nothing) would skip jobs other workers hold,
  -- which are waiting to everyone else and ahead of what it would get; taken one at a time
  -- they would be its jobs now. Their holders are told to hand back what they have not
  -- started (a 'peer' message on the control channel; no new control version: no control
  -- changed), the take answers status 3 with the ms to wait at most (a hand-back posts a
  -- wake-up), and the caller asks again (-2) until they are back or that time has passed;
  -- an ask that still finds some tells their holders again (a reply on its way when they
  -- were told brought more). Only jobs a holder may still hand back count (held_by_live):
  -- a frozen or dead holder's wait for its lease, and no take waits on them. Until the
  -- caller's wait ends no hold is granted on the queue (meta 'nh'): the holders' hand-back
  -- calls would take the same jobs back.
  -- (Locals of this function, not of the file: a script's main chunk holds at most 200.)
  local GIVE_WAY_GRACE_MS = 200  -- past the last hold, for its hand-back to reach Redis
  local give_way = 0
  if hold < 0 then give_way, hold = hold, 0 end
  if give_way ~= 0 and out[1] == 0 and count > 0 then
    -- Whether a job in the held set has a holder that may still hand it back: one whose last
    -- finish call (the calls hash, finish.lua) was made after `since` (ms). The 8 held jobs
    -- with the latest leases (the lowest scores: a lease scores minus its deadline,
    -- base.lua) and the 8 with the earliest are looked at: a live holder's are the
    -- freshest, a frozen holder's age, and a frozen holder whose leases are longer (its
    -- own lock_duration) still leaves a live one at the other end. Bounded work, on the
    -- give-way path only.
    -- (Made here, on this path alone: the file-level locals are at the limit.)
    local function held_by_live(since)
      local ids = redis.call('ZRANGE', K.held, 0, 7)
      for _, id in ipairs(redis.call('ZREVRANGE', K.held, 0, 7)) do ids[#ids + 1] = id end
      local seen = {}
      for _, id in ipairs(ids) do
        local w = redis.call('HGET', JP .. id, 'w')
        if w and not seen[w] then
          seen[w] = true
          local record = redis.call('HGET', BASE .. ':calls', w)
          if record and (tonumber(cmsgpack.unpack(record)[5]) or 0) > since then return true end
        end
      end
      return false
    end
    local hu = tonumber(m.hu) or 0
    -- A holder's hold ends at most HOLD_MAX_MS after its last call.
    local HOLD_MAX_MS = 50  -- the longest hold a worker asks for (worker.py HOLD_TIME)
    if now < hu + GIVE_WAY_GRACE_MS and held_by_live(now - HOLD_MAX_MS - GIVE_WAY_GRACE_MS) then
      local left = math.max(0, hu - now) + GIVE_WAY_GRACE_MS
      redis.call('PUBLISH', BASE .. ':control', 'peer|')
      if give_way == -1 then
        local nh = int_str(now + left)
        redis.call('HSET', K.meta, 'nh', nh)
        meta_set('nh', nh)
      end
      out[1] = 3; out[2] = left
      return with_wait_info(out)
    end
    if give_way == -2 and m.nh then
      redis.call('HDEL', K.meta, 'nh')  -- what the wait was for is over: holds again
      meta_set('nh', false)
    end
  end
  -- A held job given a priority (change_priority.lua: meta 'ha', the hash 'held-ahead' of
  -- id -> token) is ahead of every plain job from then on, as it would be were it waiting;
  -- but it is in its holder's hands until they hand it back. Until they have (or it
  -- started there, or went elsewhere: the entry's token no longer holds it), takes take
  -- nothing and say 'rate limited' for 5 ms: the holder's own call in flight included,
  -- which would have taken the plain jobs after it. Only while its holder may still hand
  -- it back (the last hold plus GIVE_WAY_GRACE_MS, as for giving way): a dead holder's is
  -- waited for by its lease, not by the queue. Bounded: one entry per such held job.
  if out[1] == 0 and m.ha and count + hold > 0 then
    local ahead_key, waiting_for = BASE .. ':held-ahead', false
    local entries = redis.call('HGETALL', ahead_key)
    for i = 1, #entries, 2 do
      local f = redis.call('HMGET', JP .. entries[i], 'st', 'tok')
      if f[1] == 'held' and f[2] == entries[i + 1] then
        waiting_for = true
      else
        redis.call('HDEL', ahead_key, entries[i])
      end
    end
    if not waiting_for then
      redis.call('HDEL', K.meta, 'ha')
      meta_set('ha', false)
    elseif now < (tonumber(m.hu) or 0) + GIVE_WAY_GRACE_MS then
      out[1] = 2; out[2] = 5
    end
  end
  if out[1] ~= 0 or gconc or lim_max > 0 or (tonumber(m.nh) or 0) > now then hold = 0
  elseif hold_ms > 0 then
    local until_ms = now + hold_ms
    -- No hold past the moment a job that goes ahead falls due (base.lua enqueue_delayed):
    -- those due by now were promoted above (or are stale), and leave the listing.
    local ahead_key = BASE .. ':delayed-ahead'
    local first = redis.call('ZRANGE', ahead_key, 0, 0, 'WITHSCORES')
    if first[2] and tonumber(first[2]) <= now then
      redis.call('ZREMRANGEBYSCORE', ahead_key, '-inf', int_str(now))
      first = redis.call('ZRANGE', ahead_key, 0, 0, 'WITHSCORES')
    end
    if first[2] and tonumber(first[2]) < until_ms then until_ms = tonumber(first[2]) end
    out[8] = until_ms - now  -- the hold granted, in ms
    if not tonumber(m.hu) or tonumber(m.hu) < until_ms then
      local hu = int_str(until_ms)
      redis.call('HSET', K.meta, 'hu', hu)
      meta_set('hu', hu)
    end
  end
  if out[1] ~= 0 then count = 0 end
  local want = count + hold
  if want <= 0 then return with_wait_info(out) end
  local ids, scores, gids = {}, {}, {}
  -- Grouped jobs (includes/groups.lua) take turns with ungrouped ones: half the free slots
  -- each while both wait, the rest to whichever has jobs; held ones after the ungrouped.
  -- Groups exist only in a queue that has had grouped jobs (meta 'gwn', kept from the
  -- first one on): the others skip their two reads.
  local grouped = false
  if m.gwn then
    groups_wake_due(now)
    grouped = redis.call('LLEN', GQ) > 0
  end
  if grouped and count > 0 then
    local share = count
    if redis.call('ZCARD', K.pri) + redis.call('XLEN', K.ready) > 0 then
      share = math.ceil(count / 2)
    end
    take_grouped(now, share, ids, scores, gids)
  end
  local popped = want > #ids and redis.call('ZPOPMIN', K.pri, want - #ids) or {}
  for i = 1, #popped, 2 do ids[#ids + 1] = popped[i]; scores[#ids] = popped[i + 1] end
  -- bare[i]: job i is new and holds only its name, data and time (base.lua enqueue_ready),
  -- so the take reads those alone: each absent field asked for costs a scan of the hash.
  local bare = {}
  if #ids < want then
    local read, read_bare = read_stream(want - #ids)
    local n = #ids
    for i = 1, #read do
      ids[n + i] = read[i]
      bare[n + i] = read_bare[i]
    end
  end
  if grouped and #ids < count then take_grouped(now, count - #ids, ids, scores, gids) end
  if grouped and hold > 0 and #ids < want and #ids >= count then
    take_grouped(now, want - #ids, ids, scores, gids, true)
  end
  if #ids == 0 then return with_wait_info(out) end
  -- Tokens never fall below the Redis clock in microseconds. A counter that went back (a
  -- new queue, one obliterated, a Redis that lost its data or came back from an older
  -- snapshot) would hand out again tokens that workers of the lost time still hold: their
  -- results would finish the new runs of the same jobs, taken again in the same order
  -- (and give their group slots back while those run). Past every earlier token unless
  -- the queue took more than a million jobs a second on average. (One HSET, where a bare
  -- counter was one HINCRBY; the stored value comes with the call's meta read.)
  local fence = tonumber(m.fence) or 0
  if fence < now * 1000 then fence = now * 1000 end
  local fence_to = int_str(fence + #ids)
  redis.call('HSET', K.meta, 'fence', fence_to)
  meta_set('fence', fence_to)
  -- Fields absent from a hash cost a scan of all of it each: the stalled count is only
  -- read once a job of the queue has stalled (meta 'xs'), a scheduler's id only for its
  -- firings, whose ids start with "sched:" (custom ids cannot). The group is never read:
  -- a job has one exactly when it came out of its group's set (gids), as every way to
  -- waiting sends a grouped job there (base.lua enqueue_*), never to the stream or the
  -- priority set.
  local read_stc = m.xs ~= false
  local lease_at = lease_prefix(now + lease_ms)
  -- Tokens as strings without string.format per job (~1.4k instructions): the digits
  -- above the last three, formatted once per thousand, then the last three from a table.
  local tok_hi, tok_prefix = -1, ''
  local now_s = int_str(now)
  local leases, holds, grouped_holds, held_groups = {}, {}, nil, nil
  local nl, nh = 0, 0  -- their lengths (no # per job)
  local active_n = 0
  -- Locals for what the loop calls per job: a global is a table lookup on each use.
  local rcall, sbyte = redis.call, string.byte
  local on = #out
  for i, id in ipairs(ids) do
    local jk = JP .. id
    -- The job's fields as locals: a reply table reshuffled into one layout had its array
    -- part grown per job (a key past its end goes to the hash part and rehashes it).
    local name, data, opts, atm, ts, p, stc, sch, ats, grp, hrc
    local firing = sbyte(id, 1) == 115 and string.sub(id, 1, 6) == 'sched:'  -- 115: 's'
    if firing and i > count then
      -- A scheduler's firing is never held: it counts as run (its iteration, its next
      -- firing, catch_up's decision) when taken, which a hold would do too early (a
      -- firing handed back, drained or paused would count as run). It and every job taken
      -- after it go back to their places; it is next, for the first free slot.
      for j = i, #ids do
        enqueue_return(JP .. ids[j], ids[j], scores[j] or '')
        if gids[j] and j <= count then group_release(gids[j]) end  -- (a slot taken)
      end
      break
    end
    if firing then
      name, data, opts, atm, ts, p, stc, sch, ats, grp, hrc = unpack(
        rcall('HMGET', jk, 'n', 'd', 'o', 'atm', 'ts', 'p', 'stc', 'sch', 'ats', 'g', 'hrc'))
    elseif bare[i] then
      name, data, ts = unpack(rcall('HMGET', jk, 'n', 'd', 'ts'))
    elseif read_stc then
      -- The stalled count, and the holds of dead holders that gave it back (stalled.lua),
      -- are read only where the queue can have them (meta 'xs': a job has stalled or been
      -- given back): an absent field costs a scan of the hash.
      name, data, opts, atm, ts, p, ats, stc, hrc = unpack(
        rcall('HMGET', jk, 'n', 'd', 'o', 'atm', 'ts', 'p', 'ats', 'stc', 'hrc'))
      grp = gids[i]
    else
      name, data, opts, atm, ts, p, ats = unpack(
        rcall('HMGET', jk, 'n', 'd', 'o', 'atm', 'ts', 'p', 'ats'))
      grp = gids[i]
    end
    local handed = false
    if name and sch and scheduler_on_take(jk, id, now, true, sch) then
      -- A missed firing of a catch_up="skip" scheduler: the hook deleted it; nothing to run.
    elseif name then
      handed = true
      ats = int_str(count_num(ats, 0) + 1)
      local ps = scores[i] or ''
      local tok_lo = (fence + i) % 1000
      local hi = (fence + i - tok_lo) / 1000
      if hi ~= tok_hi then tok_hi, tok_prefix = hi, (hi > 0 and int_str(hi) or '') end
      local tok = tok_prefix == '' and int_str(tok_lo) or tok_prefix .. PAD3[tok_lo]
      -- Active or held by place, not by how many were handed out before it: the first
      -- `count` were taken for free slots (a grouped one with its slot counted), the rest
      -- to hold. A dropped one among the first leaves its slot free until the next call.
      if i <= count then
        active_n = active_n + 1
        -- One write per job: the counter is bumped from the value just read.
        if ps == '' then
          rcall('HSET', jk, 'st', 'active', 'tok', tok, 'pon', now_s, 'w', worker, 'ats', ats)
        else
          rcall('HSET', jk, 'st', 'active', 'tok', tok, 'pon', now_s, 'w', worker, 'ats', ats,
                'ps', tok .. '@' .. ps)
        end
        leases[nl + 1] = lease_score_at(lease_at, i)
        leases[nl + 2] = id
        nl = nl + 2
        if lim_max > 0 then redis.call('ZADD', K.window, now_s, tok) end
        emit_batched('active', id)
      else
        -- Held: started (and counted as started) only when the worker starts it.
        if ps == '' then
          rcall('HSET', jk, 'st', 'held', 'tok', tok, 'w', worker)
        else
          rcall('HSET', jk, 'st', 'held', 'tok', tok, 'w', worker, 'ps', tok .. '@' .. ps)
        end
        holds[nh + 1] = lease_score_at(lease_at, i)
        holds[nh + 2] = id
        nh = nh + 2
        if grp then  -- counted per bucket of tokens (includes/groups.lua: gheldn)
          grouped_holds, held_groups = grouped_holds or {}, held_groups or {}
          local b = token_bucket(tok)
          grouped_holds[b] = (grouped_holds[b] or 0) + 1
          local in_b = held_groups[b] or {}
          in_b[#in_b + 1] = grp
          held_groups[b] = in_b
        end
      end
      local n = on
      out[n + 1] = id; out[n + 2] = tok; out[n + 3] = name; out[n + 4] = data
      out[n + 5] = opts or ''; out[n + 6] = atm or '0'; out[n + 7] = ats; out[n + 8] = ts or '0'
      -- Suspect ('!' after the stalled count): a dead holder's hold gave it back, maybe
      -- after it started there; a worker that holds it starts it only once Redis knows of
      -- the start (worker.py).
      out[n + 9] = p or '0'; out[n + 10] = hrc and ((stc or '0') .. '!') or (stc or '0')
      out[n + 11] = grp or ''  -- the group ('' = none)
      on = n + 11
    else
      -- The job hash vanished (deleted behind our back): nothing to run, say so.
      emit('ev', 'error', 'id', id, 'reason', 'job hash missing at fetch')
    end
    -- A grouped job that turned out unrunnable gives its slot back at once.
    if gids[i] and i <= count and not handed then group_release(gids[i]) end
  end
  call_batched('ZADD', K.active, leases)
  call_batched('ZADD', K.held, holds)
  if grouped_holds then group_holds_count(grouped_holds, held_groups) end
  flush_events()
  out[2] = (out[1] == 0) and active_n or out[2]
  -- Every id taken may have turned out unrunnable (a dropped firing, a vanished hash).
  if #out == HEADER_LEN then return with_wait_info(out) end
  return out
end
