-- Removes up to ARGV[3] waiting (and, if ARGV[2] = '1', delayed) jobs. Call again until it
-- returns less than the batch.
--@include base
local batch = tonumber(ARGV[3])
local removed = 0
local ids = redis.call('ZRANGE', K.pri, 0, batch - 1)
if #ids > 0 then
  for _, id in ipairs(ids) do delete_job_keys(id) end
  redis.call('ZREM', K.pri, unpack(ids))
  removed = #ids
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
if removed < batch and ARGV[2] == '1' then
  ids = redis.call('ZRANGE', K.delayed, 0, batch - removed - 1)
  if #ids > 0 then
    for _, id in ipairs(ids) do delete_job_keys(id) end
    redis.call('ZREM', K.delayed, unpack(ids))
    removed = removed + #ids
  end
end
if removed < batch then emit('ev', 'drained') end
return removed
