-- Creates or updates a job scheduler in one atomic step; idempotent: the same upsert from
-- any number of processes leaves one scheduler and one pending firing.
-- KEYS: vector, scheduler hash, cron times, index, refill set
-- ARGV: JP, sid, timing signature, kind, cron, tz, every_ms, start_ms (-1 = none),
--       end_ms (-1 = none), limit (0 = none), catch_up, job name, data, opts, priority,
--       job options (as given, for display), exhausted ('1' = the cron has no times after
--       the given ones, before its end date), ntimes, cron times (ms, ascending)...
-- Returns {status, pending job id}: status 0 unchanged, 1 created, 2 timing changed
-- (new generation, pending firing replaced), 3 template or settings changed; with
-- {..., held firing ids, their tokens, ms} appended when workers hold firings taken last
-- (below; the ids and tokens space-separated; ms: what is left of the longest hold).
--@include base
--@once
--@include scheduler
local sid, sig = ARGV[2], ARGV[3]
local sk, tk = KEYS[NK + 1], KEYS[NK + 2]
local now = now_ms()
local old = redis.call('HMGET', sk, 'sig', 'n', 'd', 'o', 'p', 'jo', 'end', 'limit', 'catch', 'nid',
                      'lid')
local template_same = old[2] == ARGV[12] and old[3] == ARGV[13] and old[4] == ARGV[14]
  and old[5] == ARGV[15] and old[6] == ARGV[16]
local settings_same = old[7] == ARGV[9] and old[8] == ARGV[10] and old[9] == ARGV[11]
if old[1] == sig and template_same and settings_same then
  return {0, old[10] or ''}
end

redis.call('HSET', sk, 'n', ARGV[12], 'd', ARGV[13], 'o', ARGV[14], 'p', ARGV[15], 'jo', ARGV[16],
           'end', ARGV[9], 'limit', ARGV[10], 'catch', ARGV[11], 'upd', now)

-- The firings taken last ('lid', includes/scheduler.lua) may be held by workers ahead of
-- their start: waiting, to the user, so what this upsert does to a waiting firing it does
-- to those too (withdrawn on a new timing, given the new template), and their holders are
-- asked to hand them back. The reply then names them with their tokens, and the caller
-- waits for the answers (handed back, or started before the worker heard: it runs as
-- taken). One its worker handed back before it started (its hold ran out, a control change
-- ended it) is waiting again, never started ('ats' 0): pending as the next firing is
-- ('backs').
local held_ids, held_toks, backs = {}, {}, {}
for fid in string.gmatch(old[11] or '', '%S+') do
  local f = redis.call('HMGET', JP .. fid, 'st', 'tok', 'ats')
  if f[1] == 'held' then
    held_ids[#held_ids + 1] = fid
    held_toks[#held_toks + 1] = f[2] or ''
  elseif f[1] == 'waiting' and f[3] == '0' then
    backs[#backs + 1] = fid
  end
end
local held_wait = -1
local function reply(status, nid)
  if held_wait >= 0 then
    return {status, nid, table.concat(held_ids, ' '), table.concat(held_toks, ' '), held_wait}
  end
  return {status, nid}
end

local status
if old[1] ~= sig then
  -- New scheduler, or new timing: a new generation, so no firing id of the old one (even a
  -- retained finished job, or one of a removed scheduler with the same id) can be reused.
  status = old[1] and 2 or 1
  sch_unlink_pending(old[10], 'scheduler ' .. sid .. ' changed')
  for _, fid in ipairs(backs) do sch_unlink_pending(fid, 'scheduler ' .. sid .. ' changed') end
  for _, fid in ipairs(held_ids) do
    if mark_held_removed(JP .. fid, fid) == 1 then
      emit('ev', 'removed', 'id', fid, 'prev', 'waiting', 'reason', 'scheduler ' .. sid .. ' changed')
    end
  end
  if #held_ids > 0 then held_wait = control_changed('remove') end
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
  return reply(status, h.nid)
end

-- Applies the template (name, data, options, priority, group) to the pending firing if
-- that has not started: delayed, or due and waiting. A waiting one keeps its place in line
-- unless its priority or group changed; then it is queued again as they now say. (Here and
-- not in includes/scheduler.lua: a local there counts against finish.lua's 200 in EVAL mode.)
local function refresh_pending(id, h)
  local jk = JP .. id
  local f = redis.call('HMGET', jk, 'st', 'p', 'g')
  if f[1] ~= 'delayed' and f[1] ~= 'waiting' then return end
  local prio, g = sch_num(h.p, 0), nil
  if h.jo ~= '' then  -- job_options={"group": ...}, as sch_advance reads it
    local ok, jo = pcall(cmsgpack.unpack, h.jo)
    if ok and type(jo) == 'table' and type(jo.group) == 'string' then g = jo.group end
  end
  local requeue = f[1] == 'waiting' and (sch_num(f[2], 0) ~= prio or (f[3] or nil) ~= g)
  if requeue then unlink_job(jk, id) end
  redis.call('HSET', jk, 'n', h.n, 'd', h.d, 'o', h.o, 'p', prio)
  if g then redis.call('HSET', jk, 'g', g) else redis.call('HDEL', jk, 'g') end
  if requeue then enqueue_ready(jk, id, prio) end
end

-- Same timing: keep the generation and the schedule; refresh the pending firing.
status = 3
local h = sch_load(sk)
if h.kind == 'cron' and old[7] ~= ARGV[9] then
  -- A new end date: the time list was cut at the old one (and marked exhausted if it fell
  -- within the list), so take the times computed for the new one. Times already used go.
  sch_store_times(tk, 18, tonumber(ARGV[18]))
  redis.call('ZREMRANGEBYSCORE', tk, '-inf', math.max(sch_num(h.last, -1), sch_num(h.nxt, 0) - 1))
  redis.call('HSET', sk, 'exhausted', ARGV[17])
  h.exhausted = ARGV[17]
end
if h.nid ~= '' then
  local nxt = sch_num(h.nxt, -1)
  local stop, limit = sch_num(h['end'], -1), sch_num(h.limit, 0)
  if (stop >= 0 and nxt > stop) or (limit > 0 and sch_num(h.ic, 0) >= limit) then
    sch_unlink_pending(h.nid, 'scheduler ' .. sid .. ' ended')
    sch_idle(sk, sid, h, true)
  elseif not template_same then
    refresh_pending(h.nid, h)
  end
else
  -- No pending firing (ended, or waiting for a refill): a raised limit or a later end date
  -- may let it go on; resume from the first fire time after both now and the last run.
  sch_advance(sk, tk, sid, h, math.max(now - 1, sch_num(h.last, -1)), now)
end
if not template_same then
  for _, fid in ipairs(backs) do refresh_pending(fid, h) end
  for _, fid in ipairs(held_ids) do
    -- Its group stays: held jobs are counted by group (includes/groups.lua: gheldn).
    redis.call('HSET', JP .. fid, 'n', h.n, 'd', h.d, 'o', h.o, 'p', sch_num(h.p, 0))
  end
  if #held_ids > 0 then held_wait = control_changed('template') end
end
return reply(status, h.nid)
