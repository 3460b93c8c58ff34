-- Deletes the queue, ARGV[2] jobs per call; returns how many it removed, and 0 once every
-- job is gone and the queue keys are deleted. Refuses while jobs are active, unless forced.
-- Jobs workers hold ahead are waiting to everyone else, but any may have started on its
-- worker (its start note on the way): unless ARGV[4] = '1' the holders are asked to hand
-- them back and {-1, ms} returned (ms: what is left of the longest hold), and
-- Queue.obliterate calls again once that has passed, with ARGV[4] = '1'. By then a held
-- job its holder had started is active, and one that was not started cannot be.
-- ARGV: JP, batch, force, holds waited out
--@include base
local batch = tonumber(ARGV[2])
if ARGV[3] ~= '1' and redis.call('ZCARD', K.active) > 0 then
  return redis.error_reply('INVALIDSTATE queue has active jobs; pass force=True')
end
-- (Forced too: a held job deleted without its holder told could start after the call.)
if ARGV[4] ~= '1' and redis.call('ZCARD', K.held) + redis.call('ZCARD', K.held_removed) > 0 then
  return {-1, control_changed('obliterate')}
end
local removed = 0
local sets = {K.pri, K.delayed, K.active, K.held, K.held_removed, BASE .. ':waiting-children'}
for _, state_set in ipairs({K.completed, K.failed}) do
  for _, key in ipairs(finished_sets(state_set)) do sets[#sets + 1] = key end
end
for _, set_key in ipairs(sets) do
  if removed < batch then
    removed = removed + delete_set_members(set_key, batch - removed)
  end
end
if removed < batch then
  removed = removed + delete_ready_entries(batch - removed)
end
-- Groups (includes/groups.lua): their waiting jobs, then their own keys.
for _, g in ipairs(redis.call('ZRANGE', GI, 0, batch - 1)) do
  if removed >= batch then break end
  local n = delete_set_members(gwait(g), batch - removed)
  removed = removed + n
  if redis.call('EXISTS', gwait(g)) == 0 then
    redis.call('DEL', gkey(g), gwin(g))
    redis.call('ZREM', GI, g)
    redis.call('ZREM', GA, g)
    redis.call('ZREM', GP, g)
    removed = removed + 1
  end
end
if removed < batch then
  -- Dedup keys outlive their jobs (a ttl), so they go by their listing.
  local dids = redis.call('ZRANGE', DEDUPS, 0, batch - removed - 1)
  for _, did in ipairs(dids) do
    redis.call('DEL', DEDUP_PREFIX .. did, BASE .. ':dedup-next:' .. did)
  end
  if #dids > 0 then redis.call('ZREM', DEDUPS, unpack(dids)) end
  removed = removed + #dids
end
if removed == 0 then
  local workers = BASE .. ':workers'
  local keys = {K.meta, K.idc, K.ready, K.events, K.wake, K.window, K.pause_until, workers,
                BASE .. ':metrics:totals', groups_of(K.completed), groups_of(K.failed),
                BASE .. ':producers', BASE .. ':calls', GQ, GS, GI, GA, GP, BASE .. ':gheld',
                BASE .. ':gheldn', BASE .. ':delayed-ahead', BASE .. ':held-ahead'}
  -- The groups listed per bucket of held jobs (includes/groups.lua: gheldg).
  for _, b in ipairs(redis.call('ZRANGE', BASE .. ':gheld', 0, -1)) do
    keys[#keys + 1] = BASE .. ':gheldg:' .. b
  end
  -- Heartbeats of workers that stopped without removing theirs (a live worker writes its
  -- own again at its next beat).
  for _, name in ipairs(redis.call('ZRANGE', workers, 0, -1)) do
    keys[#keys + 1] = BASE .. ':worker:' .. name
  end
  -- Every per-minute metrics key that can still exist: each expires METRICS_KEEP_S after
  -- its minute's last count (count_metrics).
  local minute = math.floor(now_ms() / 60000)
  for m = minute - METRICS_KEEP_S / 60 - 2, minute + 1 do
    keys[#keys + 1] = BASE .. ':metrics:' .. m
  end
  -- The replies kept for re-sent calls (wrappers/once.lua): a hash per 10 s, each gone
  -- 100 s after its last write.
  local period = math.floor(now_ms() / 10000)
  for p = period - 11, period + 1 do keys[#keys + 1] = BASE .. ':once:' .. p end
  redis.call('DEL', unpack(keys))
end
return removed
