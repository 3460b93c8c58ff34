-- Flows: a parent job waits in 'waiting-children' (listed in '{p:q}:waiting-children',
-- scored by when it began waiting) until each of its children is done, then goes to
-- waiting (or delayed by its own delay, 'fdl' ms) and runs.
--   Parent: 'pend' = children not done yet; '{p:q}:kids:<id>' = child job key -> '' while
--   pending, 'c' .. return value once completed, 'f' .. reason once failed (or removed)
--   under the 'ignore' policy.
--   Child: 'par' = the parent's job key "{p:q}:j:<id>", 'pol' = what its failure does:
--   f = fail the parent (default), i = ignore (the parent runs and sees it), r = remove the
--   dependency (the parent stops waiting for it).
-- A child tells its parent once: only while its entry is '' (so retries, stalls and
-- re-sends never tell it twice). Children may live in other queues: the functions below
-- switch the shared helpers to another queue's keys (in_queue). This needs every queue of
-- a flow in one slot on Redis Cluster: queues whose prefix is a tag ("{flows}") share one;
-- the client refuses a flow across slots (flows.py).
-- Included by base.lua, so that every script that deletes jobs also cleans up flows.

-- "{p:q}:j:<id>" -> "{p:q}", "<id>"; the prefix may be a tag itself, "{{t}:q}" (keys.py:
-- validate_prefix). Names hold no braces; ids may hold anything.
local function split_job_key(jk)
  local base, id = string.match(jk, '^({{[^{}]*}:[^{}]*}):j:(.*)$')
  if base then return base, id end
  return string.match(jk, '^({[^{}]*}):j:(.*)$')
end

-- Runs fn(...) with K, JP, LP, BASE and the per-call caches pointing at queue `base`.
local function in_queue(base, fn, ...)
  if base == BASE then return fn(...) end
  -- Events gathered for this queue go to its own stream before the keys switch.
  flush_events()
  -- The next call derives its keys afresh (includes/call.lua): this one may fail while
  -- they are switched.
  DERIVED_FOR = nil
  local saved_k = {}
  for name, key in pairs(K) do saved_k[name] = key end
  local saved = {JP, LP, BASE, DEDUPS, DEDUP_PREFIX, woken, emax, emitted, extra_live,
                 meta_cache}
  -- The groups' keys (includes/groups.lua) are computed once from BASE: switched too, or
  -- a grouped parent released here would join the calling queue's round-robin.
  local saved_g = {GQ, GS, GI, GA, GP, gdefaults}
  for i = 1, NK do K[KEY_ORDER[i]] = base .. KEY_SUFFIX[i] end
  JP, LP, BASE = base .. ':j:', base .. ':logs:', base
  DEDUPS, DEDUP_PREFIX = base .. ':dedups', base .. ':dedup:'
  -- The other queue's meta is its own: read afresh, and written there, not in this one's
  -- snapshot (base.lua: meta_marks, meta_set).
  woken, emax, emitted, extra_live, meta_cache = false, nil, 0, nil, nil
  GQ, GS, GI, GA, GP = base .. ':gready', base .. ':gsleep', base .. ':groups',
                       base .. ':gactive', base .. ':gpaused'
  gdefaults = nil
  local out = fn(...)
  flush_events()
  for name, key in pairs(saved_k) do K[name] = key end
  JP, LP, BASE, DEDUPS, DEDUP_PREFIX = saved[1], saved[2], saved[3], saved[4], saved[5]
  woken, emax, emitted, extra_live, meta_cache = saved[6], saved[7], saved[8], saved[9],
                                                saved[10]
  GQ, GS, GI, GA, GP, gdefaults = saved_g[1], saved_g[2], saved_g[3], saved_g[4], saved_g[5],
                                  saved_g[6]
  return out
end

local function waiting_children_set() return BASE .. ':waiting-children' end

-- Flow work that a call has set off and not done yet (nil while none is under way): a
-- parent to tell that its child is done, or a pending child of a deleted parent to delete.
-- A failure that climbs a chain, a removed parent's subtree, or a parent failed and
-- deleted at once (it keeps no failed jobs) that tells its own parent, are done one item
-- after the other by the function that started them (flow_do), never by recursion: a
-- chain thousands deep overflowed Lua's stack (remove and obliterate failed on it).
local flow_work
-- Set when this call marked a held child of a deleted parent for deletion: what is left of
-- the longest hold in its queue (control_changed), which the caller waits out
-- (remove.lua), so that the child cannot start once the call has returned.
local flow_held_wait

-- Finish hooks (finish.lua, stalled.lua): a child reached a final state.
local flow_finished  -- (set below)

do  -- (the helpers below are these two hooks' alone: see NK's note in base.lua)
  -- Every child is done: the parent (of the current queue) goes to waiting or delayed.
  local function flow_release(jk, id)
    local now = now_ms()
    redis.call('ZREM', waiting_children_set(), id)
    local f = redis.call('HMGET', jk, 'p', 'fdl')
    local delay = tonumber(f[2]) or 0
    if delay > 0 then
      enqueue_delayed(jk, id, now + delay, nil, tonumber(f[1]) or 0)
      wake()
      emit('ev', 'delayed', 'id', id, 'delay', int_str(delay))
    else
      local prio = tonumber(f[1]) or 0
      enqueue_ready(jk, id, prio)
      emit('ev', 'waiting', 'id', id)
    end
  end

  -- A parent failed by its child is stored like any failed job, by its own retention
  -- setting ('kf' "count:age_ms", written at add; none: kept): in the state's set when that
  -- is the shared setting (or the state is empty and has none yet), else in its group's set
  -- (includes/retention.lua; trimmed by the next finish or the sweep). Keeping nothing
  -- deletes it. Returns whether it was stored.
  local function flow_store_failed(jk, id, now_s)
    local kc, ka = string.match(redis.call('HGET', jk, 'kf') or '', '^(-?%d+):(-?%d+)$')
    kc, ka = tonumber(kc) or -1, tonumber(ka) or -1
    if kc == 0 or ka == 0 then
      delete_job_keys(id)
      return false
    end
    local field, mine = 'keep:' .. K.failed, int_str(kc) .. ':' .. int_str(ka)
    local shared = redis.call('HGET', K.meta, field)
    local key = K.failed
    if not shared and redis.call('EXISTS', K.failed) == 0 then
      redis.call('HSET', K.meta, field, mine)
      meta_set(field, mine)
    elseif shared ~= mine then
      key = group_set(K.failed, kc, ka)
      redis.call('SADD', groups_of(K.failed), key)
    end
    redis.call('ZADD', key, now_s, id)
    return true
  end

  -- A child failed under 'fail_parent': the waiting parent (of the current queue) fails.
  local function flow_fail_parent(jk, id, reason)
    local now = now_ms()
    redis.call('ZREM', waiting_children_set(), id)
    local dd = redis.call('HGET', jk, 'dd')
    if dd then release_dedup(dd, id, true) end
    if flow_store_failed(jk, id, int_str(now)) then
      redis.call('HSET', jk, 'st', 'failed', 'fr', reason, 'stk', '', 'fon', int_str(now))
    end
    emit('ev', 'failed', 'id', id, 'reason', string.sub(reason, 1, EVENT_VALUE_MAX))
    count_metrics(now, 'failed', 1)
  end

  -- Child `ckey` is done: outcome 'c' (value = return value), 'f' (value = reason) or 'x'
  -- (removed). Tells its parent, and a parent that fails in turn tells its own, up the tree,
  -- however deep. A parent's reason quotes its child's cut to its first and last 1024 bytes
  -- (a chain's first cause is at the end), so that reasons up a deep chain stay bounded.
  local function flow_child_done(ckey, pref, pol, outcome, value)
    while pref and pref ~= '' do
      local pbase, pid = split_job_key(pref)
      if not pbase then return end
      local kids = pbase .. ':kids:' .. pid
      -- Not pending: told already, or the parent is gone.
      if redis.call('HGET', kids, ckey) ~= '' then return end
      local fails_parent = outcome ~= 'c' and pol ~= 'i' and pol ~= 'r'
      if outcome == 'c' then
        redis.call('HSET', kids, ckey, 'c' .. value)
      elseif pol == 'r' then
        redis.call('HDEL', kids, ckey)
      else
        redis.call('HSET', kids, ckey, 'f' .. value)
      end
      local left = redis.call('HINCRBY', pref, 'pend', -1)
      local p = redis.call('HMGET', pref, 'st', 'par', 'pol')
      if p[1] ~= 'waiting-children' and not (fails_parent and p[1]) then return end
      if not fails_parent then
        if left <= 0 then in_queue(pbase, flow_release, pref, pid) end
        return
      end
      if #value > 2048 then
        value = string.sub(value, 1, 1024) .. ' [...] ' .. string.sub(value, -1024)
      end
      local reason = 'child ' .. ckey .. (outcome == 'x' and ' was removed' or ' failed: ' .. value)
      if p[1] ~= 'waiting-children' then
        -- A parent that took this child while it ran: it fails when it next waits for its
        -- children (WaitingChildren, finish.lua 'k'); one that finished meanwhile, never.
        if p[1] ~= 'completed' and p[1] ~= 'failed' then
          redis.call('HSETNX', pref, 'cff', reason)
        end
        return
      end
      in_queue(pbase, flow_fail_parent, pref, pid, reason)
      ckey, pref, pol, outcome, value = pref, p[2], p[3], 'f', reason
    end
  end

  -- A pending child of a deleted parent goes too (with its own pending children, queued in
  -- turn); one that a worker has started runs on, detached. One a worker holds ahead is
  -- waiting to everyone else: marked for deletion (deleted when handed back; run on,
  -- detached, if its holder had started it), its holders told, as remove.lua does.
  local function flow_remove_child(ck)
    local cbase, cid = split_job_key(ck)
    if not cbase then return end
    local st = redis.call('HGET', ck, 'st')
    if st == 'held' then
      redis.call('HDEL', ck, 'par', 'pol')
      in_queue(cbase, function()
        if mark_held_removed(ck, cid) == 1 then
          emit('ev', 'removed', 'id', cid, 'prev', 'waiting')
          flow_held_wait = math.max(flow_held_wait or 0, control_changed('remove'))
        end
      end)
    elseif st == 'active' or st == 'removed' then
      redis.call('HDEL', ck, 'par', 'pol')
    elseif st then
      in_queue(cbase, function()
        unlink_job(ck, cid)
        delete_job_keys(cid)
        emit('ev', 'removed', 'id', cid, 'prev', st)
      end)
    end
  end

  -- Does the flow work `items` ({child key} to remove, or {child key, parent key, policy,
  -- outcome, value} to tell) and all it sets off; queued behind the work under way if any.
  local function flow_do(items)
    if flow_work then
      for _, item in ipairs(items) do flow_work[#flow_work + 1] = item end
      return
    end
    flow_work = items
    local i = 1
    while i <= #flow_work do
      local item = flow_work[i]
      flow_work[i] = false
      i = i + 1
      if item[2] then flow_child_done(item[1], item[2], item[3], item[4], item[5])
      else flow_remove_child(item[1]) end
    end
    flow_work = nil
  end

  -- Called by delete_job_keys (base.lua) for a job that has children or a parent, before its
  -- keys go: its pending children are read now and deleted after it (detached first: their
  -- parent's entries go with it, so their deletion does not report to it). A `finished`
  -- parent (a step job that completed or failed without waiting for the children its run
  -- added, docs/guide/flows.md) leaves them to run on, detached.
  flow_on_delete = function(jk, par, pol, pend, finished)
    local items = {}
    if pend then
      local base, id = split_job_key(jk)
      local kids = base .. ':kids:' .. id
      local all = redis.call('HGETALL', kids)
      for i = 1, #all, 2 do
        if all[i + 1] == '' then
          if finished then redis.call('HDEL', all[i], 'par', 'pol')
          else items[#items + 1] = {all[i]} end
        end
      end
      redis.call('DEL', kids)
    end
    if par and par ~= '' then items[#items + 1] = {jk, par, pol, 'x', 'removed'} end
    flow_do(items)
  end

  function flow_finished(jk, par, pol, outcome, value)
    if par and par ~= '' then flow_do({{jk, par, pol, outcome, value}}) end
  end
end
