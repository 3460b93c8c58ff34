-- Removes up to ARGV[3] waiting (and, if ARGV[2] = '1', delayed) jobs. Call again until it
-- returns less than the batch; then call with ARGV[4] = offset into the held set, page by
-- page: held jobs (waiting, to the user, but in a worker's hands) are marked removed, and
-- their worker deletes them when it hands them back (or runs them if it already started
-- them). The last page tells the workers (control_changed) and returns how long their
-- longest hold lasts, which drain() waits out: after that no drained job starts.
-- ARGV: JP, delayed, batch, held offset ('' = the waiting phase)
-- Returns {removed, ms to wait (-1 until the last page)}.
--@include base
local batch = tonumber(ARGV[3])
local removed = 0
if ARGV[4] == '' then
  removed = delete_set_members(K.pri, batch)
  if removed < batch then
    removed = removed + delete_ready_entries(batch - removed)
  end
  if removed < batch and ARGV[2] == '1' then
    removed = removed + delete_set_members(K.delayed, batch - removed)
  end
  return {removed, -1}
end
local offset = tonumber(ARGV[4])
local ids = redis.call('ZRANGE', K.held, offset, offset + batch - 1)
for _, id in ipairs(ids) do
  removed = removed + redis.call('HSETNX', JP .. id, 'rm', '1')
end
if #ids < batch then
  emit('ev', 'drained')
  return {removed, control_changed('drain')}
end
return {removed, -1}
