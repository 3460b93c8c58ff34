-- Adds cron fire times computed by Python to a scheduler's list. Harmless when repeated or
-- concurrent: times are set members, times already used are dropped, and a list computed for
-- an older generation (the timing changed since) or another end date (an upsert moved it
-- since: the list and its 'exhausted' mark were cut at the end date) is ignored.
-- KEYS: vector, scheduler hash, cron times, index, refill set
-- ARGV: JP, sid, gen, end date the times were computed for (ms, -1 = none), exhausted
--       ('1' = no times after these), ntimes, times (ms)...
-- Returns 1 if applied, 0 if stale.
--@include base
--@include scheduler
local sid, sk, tk = ARGV[2], KEYS[NK + 1], KEYS[NK + 2]
local now = now_ms()
local h = sch_load(sk)
if h.gen ~= ARGV[3] or h.kind ~= 'cron' or sch_num(h['end'], -1) ~= sch_num(ARGV[4], -1) then
  return 0
end
sch_store_times(tk, 6, tonumber(ARGV[6]))
-- Times already fired can never be used again; the pending one (nxt) stays at the head.
redis.call('ZREMRANGEBYSCORE', tk, '-inf', math.max(sch_num(h.last, -1), sch_num(h.nxt, 0) - 1))
redis.call('ZREMRANGEBYRANK', tk, 256, -1)  -- bounded size whatever the callers do
redis.call('HSET', sk, 'exhausted', ARGV[5])
h.exhausted = ARGV[5]
redis.call('ZREM', SCH_REFILL, sid)
if h.nid == '' and h.ended ~= '1' then
  -- Starved (the list ran dry before this refill): resume where the schedule stood (after
  -- the last run, or after the catch-up's "now"), so with catch_up="once" a fire time missed
  -- meanwhile yields one catch-up firing, never two.
  local after = math.max(sch_num(h.last, -1), sch_num(h.safter, -1))
  if after < 0 then after = now - 1 end
  sch_advance(sk, tk, sid, h, after, now)
end
return 1
