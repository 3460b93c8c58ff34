-- Adds a tree of jobs (a flow) or children of an existing parent, all or nothing: every
-- check runs before the first write. A node with children waits in 'waiting-children'
-- (includes/flows.lua); the others go to waiting or delayed. Nodes come parent first.
-- ARGV: JP (unused), n, producer, seq, then per node: queue base "{p:q}", id ('' = the next automatic
--       id of its queue, taken once every check passed), name, data, opts, priority,
--       delay_ms, parent ('' = none, '#k' = node k of this call, else an existing parent's
--       job key "{p:q}:j:<id>"), policy (f, i or r), failed retention ("count:age_ms",
--       kept by a parent for when a child fails it), group ('' = none; a grouped node
--       joins its queue's group when it becomes ready: at once, when its delay ends, or
--       when its children are done, includes/groups.lua), parent token ('' = none: an
--       existing parent that is active takes children only from its own run, the token
--       its worker holds; it runs on, and WaitingChildren (finish.lua 'k') waits for them).
-- The producer's id and sequence number make a re-sent call (a client retry after a
-- timeout, when the first send may have run) change nothing: as in add.lua, the producer's
-- record in '{p:q}:producers' (this first queue's) says which number it saw last, here
-- with the reply ("seq|reply|ms"), which a re-send gets back.
-- Returns {now (ms), id of each node}, or {-1, ms, parent key, its state, its token} when
-- an existing parent is held by a worker (see below; ms: what is left of the longest hold
-- granted). Errors: INVALIDSTATE (a job exists already, a parent that started or
-- finished), NOTFOUND (an unknown parent).
--@include base
--@include job_fields
--@include producers
local n = tonumber(ARGV[2])
local producer, seq = ARGV[3], tonumber(ARGV[4])
local STRIDE = 12
local function arg(i, k) return ARGV[5 + (i - 1) * STRIDE + k] end
local producers_key = BASE .. ':producers'
-- This call's record head once it has run (includes/producers.lua), and the top's reply
-- to keep when this call is not the top.
local producer_head, producer_kept = nil, nil
if producer ~= '' then
  producer_head, producer_kept = producer_turn(redis.call('HGET', producers_key, producer), ARGV[4],
                                                producer, 0)
  if not producer_head then
    -- Ran already. Its reply is kept while it is the producer's last call, which is when
    -- a client re-sends it (one call at a time); a later call overwrote it only for a
    -- stale first send, whose connection is gone and whose answer nobody reads.
    if producer_kept then return cmsgpack.unpack(producer_kept) end
    return redis.error_reply('INVALIDSTATE a stale send of an add_flow call that ran already')
  end
end

local pend = {}
for i = 1, n do
  local jk = arg(i, 0) .. ':j:' .. arg(i, 1)
  if arg(i, 1) ~= '' and redis.call('EXISTS', jk) == 1 then
    return redis.error_reply('INVALIDSTATE job ' .. jk .. ' exists already: a flow adds new jobs only')
  end
  local par = arg(i, 7)
  if string.sub(par, 1, 1) == '#' then
    local k = tonumber(string.sub(par, 2))
    pend[k] = (pend[k] or 0) + 1
  elseif par ~= '' then
    local st = redis.call('HGET', par, 'st')
    if not st then return redis.error_reply('NOTFOUND parent job ' .. par .. ' does not exist') end
    if st == 'held' or st == 'removed' then
      -- Waiting, to the user, but a worker holds it ahead of its start (or remove() has
      -- reached it there): its holders are asked to hand it back, and the caller tries
      -- again once it is back (waiting: it takes the children) or started (it refuses
      -- them), as for a parent fetched one job at a time. Nothing is written before.
      local pbase = split_job_key(par)
      local ms = 0
      if st == 'held' and pbase then ms = in_queue(pbase, control_changed, 'flow') end
      -- With its state and token now: the caller's own read, a round trip later, could
      -- be the answer already (handed back and taken again by a worker not asked).
      return {-1, ms, par, st, redis.call('HGET', par, 'tok') or ''}
    end
    local own_run = st == 'active' and arg(i, 11) ~= ''
                    and redis.call('HGET', par, 'tok') == arg(i, 11)
    if st ~= 'waiting-children' and st ~= 'waiting' and st ~= 'delayed' and not own_run then
      return redis.error_reply('INVALIDSTATE parent job ' .. par .. ' is ' .. st ..
                               ': children can be added only to a parent that has not started, '
                               .. 'or by its own processor while it runs')
    end
  end
end

-- An existing parent that was waiting or delayed waits for its new children first (a
-- delayed one keeps the rest of its delay for when they are done).
local function hold_parent(jk, id, now)
  local f = redis.call('HMGET', jk, 'st', 'due')
  if f[1] == 'waiting-children' then return end
  if f[1] == 'active' then  -- its own run added it: it runs on (see above)
    redis.call('HSET', K.meta, 'xr', '1')
    return
  end
  unlink_job(jk, id)
  local left = f[1] == 'delayed' and math.max(0, (tonumber(f[2]) or now) - now) or 0
  redis.call('HSET', jk, 'st', 'waiting-children', 'fdl', int_str(left), 'sid', '')
  redis.call('ZADD', waiting_children_set(), int_str(now), id)
  redis.call('HSET', K.meta, 'xr', '1')
  emit('ev', 'waiting-children', 'id', id)
end

local now = now_ms()
local now_s = int_str(now)
local keys = {}
local out = {now}
for i = 1, n do
  local base, id, par = arg(i, 0), arg(i, 1), arg(i, 7)
  if id == '' then id = int_str(redis.call('INCR', base .. ':id')) end
  out[#out + 1] = id
  local jk = base .. ':j:' .. id
  keys[i] = jk
  local prio, delay = tonumber(arg(i, 5)), tonumber(arg(i, 6))
  local fields = job_fields(arg(i, 2), arg(i, 3), arg(i, 4), arg(i, 5), now_s)
  local group = arg(i, 10)
  if group ~= '' then
    fields[#fields + 1] = 'g'; fields[#fields + 1] = group
    fields.group = group
  end
  if par ~= '' then
    local pk = par
    if string.sub(par, 1, 1) == '#' then pk = keys[tonumber(string.sub(par, 2))] end
    fields[#fields + 1] = 'par'; fields[#fields + 1] = pk
    fields[#fields + 1] = 'pol'; fields[#fields + 1] = arg(i, 8)
    local pbase, pid = split_job_key(pk)
    redis.call('HSET', pbase .. ':kids:' .. pid, jk, '')
    if pk == par then
      redis.call('HINCRBY', pk, 'pend', 1)
      in_queue(pbase, hold_parent, pk, pid, now)
    end
  end
  in_queue(base, function()
    if par ~= '' or pend[i] then redis.call('HSET', K.meta, 'xr', '1') end
    emit('ev', 'added', 'id', id, 'name', arg(i, 2))
    if pend[i] then
      fields[#fields + 1] = 'pend'; fields[#fields + 1] = int_str(pend[i])
      fields[#fields + 1] = 'fdl'; fields[#fields + 1] = arg(i, 6)
      fields[#fields + 1] = 'kf'; fields[#fields + 1] = arg(i, 9)
      write_job(jk, fields, 'st', 'waiting-children')
      redis.call('ZADD', waiting_children_set(), now_s, id)
      emit('ev', 'waiting-children', 'id', id)
    elseif delay > 0 then
      enqueue_delayed(jk, id, now + delay, fields, prio)
      wake()
      emit('ev', 'delayed', 'id', id, 'delay', arg(i, 6))
    else
      enqueue_ready(jk, id, prio, fields)
      emit('ev', 'waiting', 'id', id)
    end
  end)
end
if producer ~= '' then
  -- The top keeps its reply: this call's, if it is the new top.
  local reply = producer_kept
  if string.match(producer_head, '^%d+') == ARGV[4] then reply = cmsgpack.pack(out) end
  redis.call('HSET', producers_key, producer,
             producer_head .. (reply and '|' .. reply or '') .. '|' .. now_s)
end
return out
