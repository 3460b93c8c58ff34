-- Stops every worker of the queue taking jobs for ARGV[2] ms (an upstream said "slow
-- down"); a longer limit already in force is kept. Workers hand back what they hold.
-- Returns the ms left of the longest hold, which rate_limit() waits out.
--@include base
--@once
local ms = tonumber(ARGV[2])
if redis.call('PTTL', K.pause_until) < ms then
  redis.call('SET', K.pause_until, '1', 'PX', ARGV[2])
end
return control_changed('limit')
