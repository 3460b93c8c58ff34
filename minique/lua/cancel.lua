-- Asks the worker that runs a job to cancel it; the worker learns it at its next lease
-- renewal or from the 'cancel' event, and fails the job with "cancelled".
-- ARGV: JP, id
-- Returns 1 (asked), 0 (not active), or for a job a worker holds ahead {2, ms}: it may have
-- started there (its worker reports starts with its next call), or not, and then it is a
-- waiting job, which a cancel does not reach: its worker hands it back, clearing the flag
-- (finish.lua). Queue.cancel() waits for that answer, at most ms (the longest hold
-- granted) and a margin.
-- ARGV[3] = 'decide' (Queue.cancel, once the holder of a held job has not answered within
-- its hold and a margin): cancel() answers True, so the cancel must hold whatever the
-- holder did: 'cx' = '2', which a hand-back does not clear (finish.lua fails the job as
-- cancelled). Returns 1 if the job is still held (or removed), 0 otherwise.
--@include base
--@once
local jk = JP .. ARGV[2]
local st = redis.call('HGET', jk, 'st')
if ARGV[3] == 'decide' then
  if (st == 'held' or st == 'removed') and redis.call('HEXISTS', jk, 'cx') == 1 then
    redis.call('HSET', jk, 'cx', '2')
    return 1
  end
  return 0
end
if st ~= 'active' and st ~= 'held' and st ~= 'removed' then return 0 end
redis.call('HSET', jk, 'cx', '1')
emit('ev', 'cancel', 'id', ARGV[2])
-- Workers subscribe to this channel for a prompt cancel; one that misses the message
-- (reconnecting) still sees the 'cx' flag at its next lease renewal.
redis.call('PUBLISH', K.meta .. ':cancel', ARGV[2])
-- 'removed': a held job a remove() or drain() reached, whose holder has not answered yet;
-- it may have started (then it runs on) or not (then it is deleted): the same wait.
if st == 'held' or st == 'removed' then
  local hu = tonumber(meta_marks().hu)
  return {2, hu and math.max(0, hu - now_ms()) or 0}
end
return 1
