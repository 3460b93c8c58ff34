-- Changes a job's priority (BullMQ's changePriority). ARGV: JP, id, priority (0 = none,
-- -1 = LIFO: the head of the plain line, base.lua ready_score).
-- Returns 1, 0 (no such job) or {2, ms, token} for a job a worker holds ahead.
-- A waiting job moves to the end of its new priority's line (or of the plain line for 0)
-- at once, as a job added now would (a higher priority makes workers hand back what they
-- hold: enqueue_ready); the same priority leaves it where it is. In any other state the
-- job keeps its place and the priority counts from its next time waiting (falling due, a
-- retry, a flow parent's children done).
-- A held job is waiting to everyone but its holder: the place it goes back to ('ps', see
-- enqueue_return) becomes the end of its new line, its holders are asked to hand held jobs
-- back (control_changed), and Queue.change_priority waits for the answer. Handed back, it
-- is at its new place (and the call that handed it back may take it again from there);
-- started before its holder heard, it runs on as an active job. Given a priority, it is
-- ahead of every plain job: until its holder has answered, takes take nothing (the
-- holder's own call in flight too: includes/take.lua, 'held-ahead').
-- Once (a re-send gets the first reply): a re-sent call must not move the job to the end
-- of its line a second time, or back to an older priority.
--@include base
--@once
local id, prio = ARGV[2], tonumber(ARGV[3])
local jk = JP .. id
local st, tok, old = unpack(redis.call('HMGET', jk, 'st', 'tok', 'p'))
if not st or st == 'removed' then return 0 end
if (tonumber(old) or 0) == prio then return 1 end
if prio ~= 0 then redis.call('HSET', jk, 'p', prio) else redis.call('HDEL', jk, 'p') end
if st == 'waiting' then
  unlink_job(jk, id)
  enqueue_ready(jk, id, prio)
elseif st == 'delayed' and prio ~= 0 then
  -- Ahead of held jobs once it falls due: takes stop their holds then, and holders stop
  -- starting held jobs then (base.lua enqueue_delayed).
  local due = redis.call('HGET', jk, 'due') or '0'
  redis.call('ZADD', BASE .. ':delayed-ahead', due, id)
  if redis.call('EXISTS', K.held) == 1 then
    redis.call('PUBLISH', BASE .. ':control',
               'due|' .. int_str(math.max(0, tonumber(due) - now_ms())) .. '|' .. id)
  end
elseif st == 'held' or st == 'active' then
  -- (An active job taken for a free slot goes back the same way if it is handed back
  -- before it started.)
  -- nil: the end of the plain line (base.lua enqueue_return's 'end')
  local ps = ready_score(prio) or 'end'
  redis.call('HSET', jk, 'ps', (tok or '') .. '@' .. ps)  -- (valid under its token: base.lua)
  if st == 'held' then
    if ps ~= 'end' then
      -- Ahead of every plain job now: takes wait for its hand-back (includes/take.lua).
      redis.call('HSET', BASE .. ':held-ahead', id, tok or '')
      redis.call('HSET', K.meta, 'ha', '1')
    end
    return {2, control_changed('priority'), tok or ''}
  end
end
return 1
