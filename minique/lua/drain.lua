-- Removes up to ARGV[3] waiting (and, if ARGV[2] = '1', delayed) jobs. Call again until it
-- returns less than the batch.
--@include base
local batch = tonumber(ARGV[3])
local removed = 0
removed = delete_set_members(K.pri, batch)
if removed < batch then
  removed = removed + delete_ready_entries(batch - removed)
end
if removed < batch and ARGV[2] == '1' then
  removed = removed + delete_set_members(K.delayed, batch - removed)
end
if removed < batch then emit('ev', 'drained') end
return removed
