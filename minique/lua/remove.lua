-- Removes one job and all its keys. An active job cannot be removed: its worker owns it.
-- ARGV: JP, id
--@include base
local id = ARGV[2]
local jk = JP .. id
local st = redis.call('HGET', jk, 'st')
if not st then
  if redis.call('EXISTS', jk) == 1 then delete_job_keys(id); return 1 end
  return 0
end
if st == 'active' then
  return redis.error_reply('INVALIDSTATE job ' .. id .. ' is active; cancel it first')
end
if st == 'held' then
  -- Waiting, to the user, but in a worker's hands: it is deleted when the worker hands it
  -- back, which the control message asks for at once.
  if redis.call('HSETNX', jk, 'rm', '1') == 1 then
    emit('ev', 'removed', 'id', id, 'prev', 'waiting')
    control_changed('remove')
  end
  return 1
end
unlink_job(jk, id)
delete_job_keys(id)
emit('ev', 'removed', 'id', id, 'prev', st)
return 1
