-- Takes back jobs whose lease expired (worker killed, frozen or cut off). An active job
-- goes back to waiting, or to failed once it stalled more than max_stalled times; a held
-- job (not started, as far as Redis knows) goes back to its place without counting a
-- stall the first time a dead holder's hold is taken back, and counts as stalled from the
-- second time on (below). The calling
-- worker's own jobs are left alone: it is alive, and it holds their results or runs them
-- (its renewals resume as soon as Redis answers again).
-- ARGV: JP, max_stalled, batch, failed_keep_count, failed_keep_age_ms, worker
-- Returns {taken back, earliest remaining lease deadline (ms, -1 if none), now (ms),
--          ids examined}.
--@include base
--@include retention
--@include attempts
local now = now_ms()
local max_stalled = tonumber(ARGV[2])
local batch = tonumber(ARGV[3])
local me = ARGV[6] or ''
local failed, taken, examined, stalled = 0, 0, 0, 0
local done_f = retention_batch(K.failed)
-- A job that had started (or, from a holder's hold, may have) and whose lease ran out:
-- back to the front, or failed once it stalled more than max_stalled times.
-- `start`: as for attempt_entry (includes/attempts.lua), for a held job.
local function count_stall(jk, id, f, reason, start)
  stalled = stalled + 1
  local stc = redis.call('HINCRBY', jk, 'stc', 1)
  -- From now on fetches read the stalled count (includes/take.lua job_fields).
  if stc == 1 then redis.call('HSET', K.meta, 'xs', '1') end
  local hf, hv = attempt_entry(jk, 'stalled', now, reason, start)
  redis.call('HSET', jk, 'tok', '', hf, hv)
  emit('ev', 'stalled', 'id', id, 'count', stc)
  -- A job whose cancel was asked (cancel.lua: 'cx') fails as cancelled, as its worker
  -- would have failed it had it lived to hear of the cancel: it does not run again.
  local cancelled = redis.call('HEXISTS', jk, 'cx') == 1
  if stc > max_stalled or cancelled then
    local why = cancelled and 'cancelled'
                or 'job stalled more than allowable limit (' .. max_stalled .. ')'
    if f[5] then release_dedup(f[5], id, true) end
    flow_finished(jk, f[6], f[7], 'f', why)
    if retain(done_f, id, int_str(now), tonumber(ARGV[4]), tonumber(ARGV[5])) then
      redis.call('HSET', jk, 'st', 'failed', 'fr', why, 'stk', '', 'fon', int_str(now))
      redis.call('HINCRBY', jk, 'atm', 1)
    else
      delete_job_keys(id)
    end
    emit('ev', 'failed', 'id', id, 'reason', why)
    failed = failed + 1
  elseif (tonumber(redis.call('HGET', jk, 'pend')) or 0) > 0 then
    -- A step job (WaitingChildren) whose run added children still pending: its next run
    -- waits for them, as it would had its worker's result (likely WaitingChildren, sent
    -- with the worker's next call) arrived.
    redis.call('HSET', jk, 'st', 'waiting-children', 'fdl', '0')
    redis.call('ZADD', waiting_children_set(), int_str(now), id)
    emit('ev', 'waiting-children', 'id', id)
  else
    enqueue_front(jk, id)
    emit('ev', 'waiting', 'id', id)
  end
end

for _, set_key in ipairs({K.active, K.held, K.held_removed}) do
  local ids = redis.call('ZREVRANGEBYSCORE', set_key, '+inf', expired_from(now), 'LIMIT', 0,
                         batch - examined)
  examined = examined + #ids
  for _, id in ipairs(ids) do
    local jk = JP .. id
    local f = redis.call('HMGET', jk, 'w', 'ps', 'st', 'g', 'dd', 'par', 'pol', 'tok')
    if f[1] ~= me or me == '' then
      taken = taken + 1
      redis.call('ZREM', set_key, id)
      if f[4] and set_key ~= K.active and f[8] and f[8] ~= '' then
        group_holds_count({[token_bucket(f[8])] = -1})
      end
      if not f[3] then
        -- The hash is gone: nothing to take back.
      elseif set_key == K.held_removed then
        delete_job_keys(id)  -- removed while held, and its worker is gone
      elseif set_key == K.held then
        -- A held job's start reaches Redis with its worker's next call, so one that
        -- killed its worker at its start looks never started. It goes back to its place
        -- uncounted, marked suspect ('hrc'): a worker that holds a suspect job starts it
        -- only once Redis has its start note, so if it kills that worker too, it is
        -- active and its lease counts the stall. A job that kills every worker at its
        -- start fails after max_stalled + 2 crashes (one fetched at a time: + 1), and a
        -- job that only waited beside it, held by the workers it killed, is never counted
        -- (it used to be from its second dead holder on, and failed without running).
        if redis.call('HEXISTS', jk, 'cx') == 0 then
          redis.call('HINCRBY', jk, 'hrc', 1)
          -- Takes read 'hrc' (and 'stc') from now on, and tell workers it is suspect.
          redis.call('HSET', K.meta, 'xs', '1')
          enqueue_return(jk, id, f[2], f[8] or '')
        else
          -- It fails as cancelled, which uses an attempt: one its dead holder may have
          -- started (the start note goes with the next call), so it counts as started, at
          -- an unknown time. Its entry is that attempt's, not the one before, which it
          -- would take the place of in the ring.
          local ats = int_str(count_num(redis.call('HGET', jk, 'ats'), 0) + 1)
          redis.call('HSET', jk, 'ats', ats)
          count_stall(jk, id, f, 'lease expired while held (worker lost), cancel asked',
                      {'pon', '', 'ats', ats})
        end
      else
        count_stall(jk, id, f, 'lease expired (worker lost)')
        if f[4] then group_release(f[4]) end
      end
    end
  end
end
-- Jobs taken back are their holders' no longer: their completions are read again.
if taken > 0 then held_changed() end
count_metrics(now, 'stalled', stalled)
count_metrics(now, 'failed', failed)
retention_flush(done_f, now, 100)
-- The earliest lease still running tells the caller when the next check can find something.
local nxt = redis.call('ZRANGE', K.active, -1, -1, 'WITHSCORES')
local deadline = nxt[2] and lease_deadline(nxt[2]) or -1
for _, set_key in ipairs({K.held, K.held_removed}) do
  local first = redis.call('ZRANGE', set_key, -1, -1, 'WITHSCORES')
  if first[2] and (deadline < 0 or lease_deadline(first[2]) < deadline) then
    deadline = lease_deadline(first[2])
  end
end
return {taken, deadline, now, examined}
