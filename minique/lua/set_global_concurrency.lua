-- Sets (ARGV[2] = limit) or clears (ARGV[2] = '') the queue's global concurrency: at most
-- that many jobs active at once across every worker. Held jobs do not count against it,
-- and none are held while it is set: workers hand back what they hold.
-- Returns the ms left of the longest hold, which set_global_concurrency() waits out.
--@include base
--@once
if ARGV[2] == '' then
  redis.call('HDEL', K.meta, 'gconc')
  wake()
  return 0
end
redis.call('HSET', K.meta, 'gconc', ARGV[2])
return control_changed('gconc')
