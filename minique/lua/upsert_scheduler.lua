-- Creates or updates a job scheduler in one atomic step; idempotent: the same upsert from
-- any number of processes leaves one scheduler and one pending firing.
-- KEYS: vector, scheduler hash, cron times, index, refill set
-- ARGV: JP, sid, timing signature, kind, cron, tz, every_ms, start_ms (-1 = none),
--       end_ms (-1 = none), limit (0 = none), catch_up, job name, data, opts, priority,
--       job options (as given, for display), exhausted ('1' = the cron has no times after
--       the given ones, before its end date), ntimes, cron times (ms, ascending)...
-- Returns {status, pending job id}: status 0 unchanged, 1 created, 2 timing changed
-- (new generation, pending firing replaced), 3 template or settings changed.
--@include base
--@once
--@include scheduler
local sid, sig = ARGV[2], ARGV[3]
local sk, tk = KEYS[NK + 1], KEYS[NK + 2]
local now = now_ms()
local old = redis.call('HMGET', sk, 'sig', 'n', 'd', 'o', 'p', 'jo', 'end', 'limit', 'catch', 'nid')
local template_same = old[2] == ARGV[12] and old[3] == ARGV[13] and old[4] == ARGV[14]
  and old[5] == ARGV[15] and old[6] == ARGV[16]
local settings_same = old[7] == ARGV[9] and old[8] == ARGV[10] and old[9] == ARGV[11]
if old[1] == sig and template_same and settings_same then
  return {0, old[10] or ''}
end

redis.call('HSET', sk, 'n', ARGV[12], 'd', ARGV[13], 'o', ARGV[14], 'p', ARGV[15], 'jo', ARGV[16],
           'end', ARGV[9], 'limit', ARGV[10], 'catch', ARGV[11], 'upd', now)

local status
if old[1] ~= sig then
  -- New scheduler, or new timing: a new generation, so no firing id of the old one (even a
  -- retained finished job, or one of a removed scheduler with the same id) can be reused.
  status = old[1] and 2 or 1
  sch_unlink_pending(old[10], 'scheduler ' .. sid .. ' changed')
  local gen = redis.call('HINCRBY', K.meta, 'sgen', 1)
  local start = tonumber(ARGV[8])
  redis.call('HSET', sk, 'sig', sig, 'kind', ARGV[4], 'cron', ARGV[5], 'tz', ARGV[6],
             'every', ARGV[7], 'start', ARGV[8], 'anchor', start >= 0 and start or now,
             'gen', gen, 'nid', '', 'nxt', '', 'ended', '0', 'exhausted', ARGV[17])
  if status == 1 then
    redis.call('HSET', sk, 'ic', 0, 'skipped', 0, 'last', '', 'lrun', '', 'created', now)
  end
  redis.call('DEL', tk)
  sch_store_times(tk, 18, tonumber(ARGV[18]))
  redis.call('ZREM', SCH_REFILL, sid)
  local h = sch_load(sk)
  sch_advance(sk, tk, sid, h, math.max(now - 1, sch_num(h.last, -1)), now)
  return {status, h.nid}
end

-- Same timing: keep the generation and the schedule; refresh the pending firing.
status = 3
local h = sch_load(sk)
if h.nid ~= '' then
  local jk = JP .. h.nid
  local nxt = sch_num(h.nxt, -1)
  local stop, limit = sch_num(h['end'], -1), sch_num(h.limit, 0)
  if (stop >= 0 and nxt > stop) or (limit > 0 and sch_num(h.ic, 0) >= limit) then
    sch_unlink_pending(h.nid, 'scheduler ' .. sid .. ' ended')
    sch_idle(sk, sid, h, true)
  elseif not template_same and redis.call('HGET', jk, 'st') == 'delayed' then
    redis.call('HSET', jk, 'n', h.n, 'd', h.d, 'o', h.o, 'p', sch_num(h.p, 0))
  end
else
  -- No pending firing (ended, or waiting for a refill): a raised limit or a later end date
  -- may let it go on; resume from the first fire time after both now and the last run.
  sch_advance(sk, tk, sid, h, math.max(now - 1, sch_num(h.last, -1)), now)
end
return {status, h.nid}
