-- Deletes the queue, ARGV[2] jobs per call; returns how many it removed, and 0 once every
-- job is gone and the queue keys are deleted. Refuses while jobs are active, unless forced.
-- ARGV: JP, batch, force
--@include base
local batch = tonumber(ARGV[2])
if ARGV[3] ~= '1' and redis.call('ZCARD', K.active) > 0 then
  return redis.error_reply('INVALIDSTATE queue has active jobs; pass force=True')
end
local removed = 0
for _, set_key in ipairs({K.pri, K.delayed, K.completed, K.failed, K.active}) do
  if removed < batch then
    local ids = redis.call('ZRANGE', set_key, 0, batch - removed - 1)
    if #ids > 0 then
      for _, id in ipairs(ids) do delete_job_keys(id) end
      redis.call('ZREM', set_key, unpack(ids))
      removed = removed + #ids
    end
  end
end
if removed < batch then
  local entries = redis.call('XRANGE', K.ready, '-', '+', 'COUNT', batch - removed)
  local sids = {}
  for i, e in ipairs(entries) do
    sids[i] = e[1]
    delete_job_keys(e[2][2])
  end
  if #sids > 0 then redis.call('XDEL', K.ready, unpack(sids)) end
  removed = removed + #sids
end
if removed == 0 then
  local base = string.sub(K.meta, 1, #K.meta - 5)
  redis.call('DEL', K.meta, K.idc, K.ready, K.events, K.wake, K.window, K.pause_until,
             base .. ':metrics:totals')
end
return removed
