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
--@include attempts
local now = now_ms()
local now_s = int_str(now)
local nres = tonumber(ARGV[8])
local statuses = {}
local trims, trim_order = {}, {}
local counts = {completed = 0, failed = 0, retried = 0}
-- Set updates are gathered and sent once per call (see call_batched).
local left_active, to_completed, to_failed = {}, {}, {}

local function note_trim(set_key, kc, ka)
  local tk = set_key .. '|' .. kc .. '|' .. ka
  if not trims[tk] then
    trims[tk] = {set_key, tonumber(kc), tonumber(ka)}
    trim_order[#trim_order + 1] = tk
  end
end

local policies = {}
for kc, ka in string.gmatch(ARGV[9], '(-?%d+):(-?%d+)') do policies[#policies + 1] = {kc, ka} end
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
      redis.call('HSET', jk, 'st', 'completed', 'rv', value, 'fon', now_s, 'tok', '',
                 'atm', int_str((tonumber(cur[2]) or 0) + 1))
      to_completed[#to_completed + 1] = now_s
      to_completed[#to_completed + 1] = id
      emit('ev', 'completed', 'id', id)
      counts.completed = counts.completed + 1
      note_trim(K.completed, policy[1], policy[2])
    elseif kind == 'f' then
      local hf, hv = attempt_entry(jk, 'failed', now, value)
      redis.call('HSET', jk, 'st', 'failed', 'fr', value, 'stk', stack, 'fon', now_s, 'tok', '',
                 'atm', int_str((tonumber(cur[2]) or 0) + 1), hf, hv)
      to_failed[#to_failed + 1] = now_s
      to_failed[#to_failed + 1] = id
      emit('ev', 'failed', 'id', id, 'reason', string.sub(value, 1, 200))
      counts.failed = counts.failed + 1
      note_trim(K.failed, policy[1], policy[2])
    elseif kind == 'r' then
      local hf, hv = attempt_entry(jk, 'retried', now, value)
      redis.call('HSET', jk, 'fr', value, 'stk', stack, 'tok', '', hf, hv)
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
call_batched('ZADD', K.completed, to_completed)
call_batched('ZADD', K.failed, to_failed)
count_metrics(now, 'completed', counts.completed)
count_metrics(now, 'failed', counts.failed)
count_metrics(now, 'retried', counts.retried)

for _, tk in ipairs(trim_order) do
  local t = trims[tk]
  trim_finished(t[1], t[2], t[3], now, 100 + nres)
  -- The sweep of a queue gone quiet continues with the policy finishes last applied.
  redis.call('HSET', K.meta, 'keep:' .. t[1], t[2] .. ':' .. t[3])
end

local taken = take_jobs(now, tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5]),
                        tonumber(ARGV[6]), tonumber(ARGV[7]))
for _, v in ipairs(taken) do statuses[#statuses + 1] = v end
return statuses
