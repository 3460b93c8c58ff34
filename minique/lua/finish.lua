-- Finishes a batch of active jobs (complete, fail, retry, or back to waiting) and, in the
-- same call, fetches the worker's next jobs. Each result is fenced by the job's token: a
-- worker whose lease expired cannot finish a job that is no longer its own.
-- ARGV: JP, count, lease_ms, worker, limiter_max, limiter_window_ms, promote_limit, nres,
--       policies ("count:age_ms,..." retention policies, referred to by index), then per
--       result "id|token|kind|delay_ms|policy index" and the value, plus the stack trace
--       unless kind is c. (Few arguments per job: packing them is the client's hot spot.)
--   kind: c = completed (value = return value), f = failed (value = reason),
--         r = retry after delay_ms (value = reason), w = back to waiting without using an
--         attempt; delay_ms > 0 then also stops the queue taking jobs for that long,
--         d = delayed by delay_ms without using an attempt (value = reason).
--@include base
--@include retention
--@include take
local now = now_ms()
local now_s = int_str(now)
local nres = tonumber(ARGV[8])
local statuses = {}
local counts = {completed = 0, failed = 0, retried = 0}
-- Set updates are gathered and sent once per call (see call_batched).
local left_active = {}
local done_c, done_f = retention_batch(K.completed), retention_batch(K.failed)

local policies = {}
for kc, ka in string.gmatch(ARGV[9], '(-?%d+):(-?%d+)') do
  policies[#policies + 1] = {tonumber(kc), tonumber(ka)}
end
local b = 10
for _ = 1, nres do
  -- The id may contain '|', so the fixed fields are matched from the right.
  local id, tok, kind, delay_s, pi = string.match(ARGV[b], '^(.*)|([^|]*)|(%a)|(%d+)|(%d+)$')
  local value, stack = ARGV[b + 1], ''
  if kind == 'c' then b = b + 2 else stack = ARGV[b + 2]; b = b + 3 end
  local policy = policies[tonumber(pi) + 1]
  local jk = JP .. id
  -- Every way out of active clears the token, so a matching token means the job is still
  -- active and still this worker's.
  local cur = redis.call('HMGET', jk, 'tok', 'atm')
  if cur[1] ~= tok then
    statuses[#statuses + 1] = 0
  else
    statuses[#statuses + 1] = 1
    left_active[#left_active + 1] = id
    local delay = tonumber(delay_s)
    if kind == 'c' then
      -- The event carries the return value, so a waiter has it even once retention has
      -- removed the job; a large one only if no job is left to read it from.
      if retain(done_c, id, now_s, policy[1], policy[2]) then
        redis.call('HSET', jk, 'st', 'completed', 'rv', value, 'fon', now_s, 'tok', '',
                   'atm', int_str((tonumber(cur[2]) or 0) + 1))
        if #value <= EVENT_VALUE_MAX then
          emit('ev', 'completed', 'id', id, 'rv', value)
        else
          emit('ev', 'completed', 'id', id)
        end
      else
        delete_job_keys(id)
        emit('ev', 'completed', 'id', id, 'rv', value)
      end
      counts.completed = counts.completed + 1
    elseif kind == 'f' then
      if retain(done_f, id, now_s, policy[1], policy[2]) then
        redis.call('HSET', jk, 'st', 'failed', 'fr', value, 'stk', stack, 'fon', now_s,
                   'tok', '', 'atm', int_str((tonumber(cur[2]) or 0) + 1))
      else
        delete_job_keys(id)
      end
      emit('ev', 'failed', 'id', id, 'reason', string.sub(value, 1, EVENT_VALUE_MAX))
      counts.failed = counts.failed + 1
    elseif kind == 'r' then
      redis.call('HSET', jk, 'fr', value, 'stk', stack, 'tok', '')
      local atm = redis.call('HINCRBY', jk, 'atm', 1)
      counts.retried = counts.retried + 1
      emit('ev', 'retrying', 'id', id, 'attempt', atm, 'delay', delay,
           'reason', string.sub(value, 1, 200))
      if delay > 0 then
        enqueue_delayed(jk, id, now + delay)
        emit('ev', 'delayed', 'id', id, 'delay', delay)
      else
        enqueue_ready(jk, id, job_priority(jk))
        emit('ev', 'waiting', 'id', id)
      end
    elseif kind == 'd' then
      -- The processor asked to run again later (Delayed): no attempt used, and unlike a
      -- rate limit the queue goes on taking other jobs.
      redis.call('HSET', jk, 'tok', '')
      if delay > 0 then
        enqueue_delayed(jk, id, now + delay)
        emit('ev', 'delayed', 'id', id, 'delay', delay_s, 'reason', string.sub(value, 1, 200))
      else
        enqueue_front(jk, id)
        emit('ev', 'waiting', 'id', id, 'reason', string.sub(value, 1, 200))
      end
    else
      redis.call('HSET', jk, 'tok', '')
      enqueue_front(jk, id)
      emit('ev', 'waiting', 'id', id, 'reason', value)
      if delay > 0 and redis.call('PTTL', K.pause_until) < delay then
        redis.call('SET', K.pause_until, '1', 'PX', delay)
      end
    end
  end
end

call_batched('ZREM', K.active, left_active)
retention_flush(done_c, now, 100 + nres)
retention_flush(done_f, now, 100 + nres)
count_metrics(now, 'completed', counts.completed)
count_metrics(now, 'failed', counts.failed)
count_metrics(now, 'retried', counts.retried)

local taken = take_jobs(now, tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5]),
                        tonumber(ARGV[6]), tonumber(ARGV[7]))
for _, v in ipairs(taken) do statuses[#statuses + 1] = v end
return statuses
