-- Periodic scheduler upkeep, called by workers (minique/scheduler.py refill_due). Bounded:
-- at most `batch` schedulers of each kind per call, and one HGET, one ZRANGEBYSCORE and one
-- ZRANGE when there is nothing to do.
--  1. Repair: a scheduler whose pending firing is overdue by more than grace_ms and whose job
--     no longer exists (removed by hand, drained) gets its next firing after now.
--  2. Reports the cron schedulers whose precomputed time list ran low, with what Python needs
--     to compute more: {sid, gen, cron, tz, after_ms, start_ms, end_ms} each; `batch` a
--     call, from a cursor that goes round the set.
-- KEYS: vector, index, refill set
-- ARGV: JP, grace_ms, batch
-- Returns {repaired, now, [sid, gen, cron, tz, after, start, end]...}
--@include base
--@include scheduler
local now = now_ms()
local grace, batch = tonumber(ARGV[2]), tonumber(ARGV[3])
local repaired = 0
-- Overdue schedulers whose firing still exists (it waits in a queue that is behind, or
-- paused) stay in this range: a cursor (meta 'smo', an offset into the range) moves past
-- them, so that every call looks at the next `batch` and a lost firing further on is found.
local stored = tonumber(redis.call('HGET', K.meta, 'smo')) or 0
local off = stored
local due = redis.call('ZRANGEBYSCORE', SCH_INDEX, '-inf', now - grace, 'LIMIT', off, batch)
if #due == 0 and off > 0 then
  off = 0
  due = redis.call('ZRANGEBYSCORE', SCH_INDEX, '-inf', now - grace, 'LIMIT', 0, batch)
end
local stay = 0  -- of those looked at, the ones left in the range
for _, sid in ipairs(due) do
  local sk = sch_hash_key(sid)
  local h = sch_load(sk)
  if h.gen == '' then
    redis.call('ZREM', SCH_INDEX, sid)  -- index entry without a scheduler
  elseif h.nid ~= '' and redis.call('EXISTS', JP .. h.nid) == 0 then
    emit('ev', 'scheduler-repaired', 'scheduler', sid, 'lost', h.nid)
    sch_advance(sk, sch_times_key(sid), sid, h, math.max(now - 1, sch_num(h.nxt, -1)), now)
    repaired = repaired + 1
    if sch_num(redis.call('ZSCORE', SCH_INDEX, sid), now) <= now - grace then stay = stay + 1 end
  else
    stay = stay + 1
  end
end
local next_off = #due < batch and 0 or off + stay
if next_off ~= stored then
  redis.call('HSET', K.meta, 'smo', next_off)
end
local out = {repaired, now}
-- The refill set the same way (meta 'rfo'): a scheduler that no worker can compute for
-- (its time zone unknown on their machines) stays in the set, and `batch` of them at its
-- head hid every scheduler behind them from the top-ups.
local rstored = tonumber(redis.call('HGET', K.meta, 'rfo')) or 0
local roff = rstored
local low = redis.call('ZRANGE', SCH_REFILL, roff, roff + batch - 1)
if #low == 0 and roff > 0 then
  roff = 0
  low = redis.call('ZRANGE', SCH_REFILL, 0, batch - 1)
end
local rnext = #low < batch and 0 or roff + batch
if rnext ~= rstored then redis.call('HSET', K.meta, 'rfo', rnext) end
for _, sid in ipairs(low) do
  local sk = sch_hash_key(sid)
  local f = redis.call('HMGET', sk, 'gen', 'kind', 'cron', 'tz', 'last', 'nxt', 'start', 'end',
                       'exhausted', 'safter')
  if not f[1] or f[2] ~= 'cron' or f[9] == '1' then
    redis.call('ZREM', SCH_REFILL, sid)
  else
    local tail = redis.call('ZRANGE', sch_times_key(sid), -1, -1)
    local after = math.max(sch_num(tail[1], -1), sch_num(f[5], -1), sch_num(f[6], -1),
                           sch_num(f[10], -1))
    out[#out + 1] = sid; out[#out + 1] = f[1]; out[#out + 1] = f[3]; out[#out + 1] = f[4]
    out[#out + 1] = string.format('%d', after); out[#out + 1] = f[7]; out[#out + 1] = f[8]
  end
end
return out
