-- Asks the worker that runs a job to cancel it; the worker learns it at its next lease
-- renewal or from the 'cancel' event, and fails the job with "cancelled".
-- ARGV: JP, id
--@include base
--@once
local jk = JP .. ARGV[2]
local st = redis.call('HGET', jk, 'st')
-- A held job may have started already (its worker reports starts with its next call).
if st ~= 'active' and st ~= 'held' and st ~= 'removed' then return 0 end
redis.call('HSET', jk, 'cx', '1')
emit('ev', 'cancel', 'id', ARGV[2])
-- Workers subscribe to this channel for a prompt cancel; one that misses the message
-- (reconnecting) still sees the 'cx' flag at its next lease renewal.
redis.call('PUBLISH', K.meta .. ':cancel', ARGV[2])
return 1
