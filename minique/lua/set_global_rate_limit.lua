-- Sets (ARGV[2] = 'max:window_ms') or clears (ARGV[2] = '') the queue's global rate limit
-- (BullMQ's setGlobalRateLimit): at most max jobs start in any window_ms, across every
-- worker, whatever limiter a worker has (includes/take.lua). No job is held while it is
-- set, so workers hand back what they hold. Returns the ms left of the longest hold, which
-- set_global_rate_limit() waits out.
--@include base
--@once
if ARGV[2] == '' then
  -- Workers told to wait by the limit ask again at once (the control message).
  redis.call('HDEL', K.meta, 'glim')
  wake()
  return control_changed('limit')
end
redis.call('HSET', K.meta, 'glim', ARGV[2])
return control_changed('limit')
