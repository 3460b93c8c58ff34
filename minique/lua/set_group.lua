-- Changes a group's settings, or the defaults of every group (includes/groups.lua).
-- ARGV: JP, op, group, concurrency, limiter max, limiter window ms ('' = not set)
--   op: 'options' (the group's own settings; '' falls back to the defaults),
--       'defaults' (for every group without settings of its own; group is ''),
--       'pause', 'resume' (the group starts no job while paused; jobs running run on).
-- Returns the ms left of the longest hold granted (the caller waits it out). Every change
-- makes workers hand back the jobs they hold (held grouped jobs come only from
-- groups without limits: includes/groups.lua).
--@include base
--@once
local op, g = ARGV[2], ARGV[3]
local conc, max, window = ARGV[4], ARGV[5], ARGV[6]
-- From now on takes read each group's settings (includes/groups.lua: meta 'gx').
if not meta_marks().gx then
  redis.call('HSET', K.meta, 'gx', '1')
  meta_set('gx', '1')
end
-- A concurrency set while grouped jobs are held: the groups it applies to settle first
-- (includes/groups.lua: gheld). The token counter now bounds the holds granted before.
local settle_from = nil
if conc ~= '' and (op == 'options' or op == 'defaults')
    and redis.call('EXISTS', BASE .. ':gheld') == 1 then
  settle_from = redis.call('HGET', K.meta, 'fence') or '0'
end
if op == 'defaults' then
  if conc ~= '' then redis.call('HSET', K.meta, 'gdc', conc) else redis.call('HDEL', K.meta, 'gdc') end
  if settle_from then redis.call('HSET', K.meta, 'ghf', settle_from) end
  if max ~= '' then
    redis.call('HSET', K.meta, 'gdm', max, 'gdd', window)
  else
    redis.call('HDEL', K.meta, 'gdm', 'gdd')
  end
  -- A group held back by the old defaults is scheduled again at its next release (it has
  -- a job active) or wake (it sleeps): nothing to visit here.
  return control_changed('group')
end
local gk = gkey(g)
if op == 'options' then
  if conc ~= '' then redis.call('HSET', gk, 'c', conc) else redis.call('HDEL', gk, 'c') end
  if settle_from then redis.call('HSET', gk, 'hf', settle_from) end
  if max ~= '' then
    redis.call('HSET', gk, 'lm', max, 'ld', window)
  else
    redis.call('HDEL', gk, 'lm', 'ld')
  end
  redis.call('ZINCRBY', GI, 0, g)
elseif op == 'pause' then
  redis.call('HSET', gk, 'p', '1')
  redis.call('ZINCRBY', GI, 0, g)
  redis.call('ZADD', GP, 'NX', int_str(now_ms()), g)  -- the first pause counts
  emit('ev', 'group-paused', 'group', g)
elseif op == 'resume' then
  if redis.call('HDEL', gk, 'p') == 1 then emit('ev', 'group-resumed', 'group', g) end
  redis.call('ZREM', GP, g)
else
  return redis.error_reply('ERR unknown group operation ' .. op)
end
group_schedule(g)
-- Settings cleared, or a resume of a group with nothing else to keep it: forgotten now
-- (it is in no round-robin, so no turn of its would forget it).
if op ~= 'pause' then group_forget_if_idle(g) end
return control_changed('group')
