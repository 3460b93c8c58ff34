-- Deletes the queue, ARGV[2] jobs per call; returns how many it removed, and 0 once every
-- job is gone and the queue keys are deleted. Refuses while jobs are active, unless forced.
-- ARGV: JP, batch, force
--@include base
local batch = tonumber(ARGV[2])
if ARGV[3] ~= '1' and redis.call('ZCARD', K.active) + redis.call('ZCARD', K.held)
    + redis.call('ZCARD', K.held_removed) > 0 then
  return redis.error_reply('INVALIDSTATE queue has active jobs; pass force=True')
end
local removed = 0
for _, set_key in ipairs({K.pri, K.delayed, K.completed, K.failed, K.active, K.held,
                                 K.held_removed}) do
  if removed < batch then
    removed = removed + delete_set_members(set_key, batch - removed)
  end
end
if removed < batch then
  removed = removed + delete_ready_entries(batch - removed)
end
if removed == 0 then
  local base = string.sub(K.meta, 1, #K.meta - 5)
  redis.call('DEL', K.meta, K.idc, K.ready, K.events, K.wake, K.window, K.pause_until, K.held, K.held_removed,
             QB .. ':producers', QB .. ':calls',
             base .. ':metrics:totals')
end
return removed
