-- Pauses (ARGV[2] = '1') or resumes the queue for every worker. Pausing tells the workers
-- to hand back what they hold and returns the ms left of the longest hold, which pause()
-- waits out: after that no held job starts.
--@include base
--@once
if ARGV[2] == '1' then
  redis.call('HSET', K.meta, 'paused', '1')
  emit('ev', 'paused')
  return control_changed('pause')
end
redis.call('HDEL', K.meta, 'paused')
wake()
emit('ev', 'resumed')
return 0
