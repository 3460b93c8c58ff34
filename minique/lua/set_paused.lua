-- Pauses (ARGV[2] = '1') or resumes the queue for every worker.
--@include base
if ARGV[2] == '1' then
  redis.call('HSET', K.meta, 'paused', '1')
  emit('ev', 'paused')
else
  redis.call('HDEL', K.meta, 'paused')
  wake()
  emit('ev', 'resumed')
end
return 1
