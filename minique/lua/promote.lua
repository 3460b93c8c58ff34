-- Moves delayed jobs to waiting now: one job (ARGV[2] = id) or the first ARGV[3] of them.
--@include base
--@once
local ids
if ARGV[2] ~= '' then
  if redis.call('HGET', JP .. ARGV[2], 'st') ~= 'delayed' then
    return redis.error_reply('INVALIDSTATE job ' .. ARGV[2] .. ' is not delayed')
  end
  ids = {ARGV[2]}
else
  ids = redis.call('ZRANGE', K.delayed, 0, tonumber(ARGV[3]) - 1)
end
for _, id in ipairs(ids) do
  local jk = JP .. id
  redis.call('ZREM', K.delayed, id)
  redis.call('ZREM', BASE .. ':delayed-ahead', id)
  enqueue_ready(jk, id, job_priority(jk))
  emit('ev', 'waiting', 'id', id)
end
return #ids
