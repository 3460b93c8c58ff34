-- Takes back jobs whose lease expired (worker killed, frozen or cut off): back to waiting,
-- or failed once they stalled more than max_stalled times.
-- ARGV: JP, max_stalled, batch, failed_keep_count, failed_keep_age_ms
-- Returns {taken back, earliest remaining lease deadline (ms, -1 if none), now (ms)}.
--@include base
--@include retention
local now = now_ms()
local max_stalled = tonumber(ARGV[2])
local ids = redis.call('ZREVRANGEBYSCORE', K.active, '+inf', expired_from(now), 'LIMIT', 0,
                       tonumber(ARGV[3]))
local failed = 0
local done_f = retention_batch(K.failed)
for _, id in ipairs(ids) do
  local jk = JP .. id
  redis.call('ZREM', K.active, id)
  if redis.call('EXISTS', jk) == 1 then
    local stc = redis.call('HINCRBY', jk, 'stc', 1)
    redis.call('HSET', jk, 'tok', '')
    emit('ev', 'stalled', 'id', id, 'count', stc)
    if stc > max_stalled then
      local reason = 'job stalled more than allowable limit (' .. max_stalled .. ')'
      if retain(done_f, id, int_str(now), tonumber(ARGV[4]), tonumber(ARGV[5])) then
        redis.call('HSET', jk, 'st', 'failed', 'fr', reason, 'stk', '', 'fon', now)
        redis.call('HINCRBY', jk, 'atm', 1)
      else
        delete_job_keys(id)
      end
      emit('ev', 'failed', 'id', id, 'reason', reason)
      failed = failed + 1
    else
      enqueue_front(jk, id)
      emit('ev', 'waiting', 'id', id)
    end
  end
end
count_metrics(now, 'stalled', #ids)
count_metrics(now, 'failed', failed)
retention_flush(done_f, now, 100)
-- The earliest lease still running tells the caller when the next check can find something.
local nxt = redis.call('ZRANGE', K.active, -1, -1, 'WITHSCORES')
return {#ids, nxt[2] and lease_deadline(nxt[2]) or -1, now}
