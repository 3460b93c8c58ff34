-- Appends a line to a job's log, keeping the last ARGV[4] lines (0 = all).
-- ARGV: JP, id, line, keep
--@include base
--@once
local jk = JP .. ARGV[2]
if redis.call('EXISTS', jk) == 0 then return redis.error_reply('NOTFOUND job ' .. ARGV[2]) end
local lk = LP .. ARGV[2]
local n = redis.call('RPUSH', lk, ARGV[3])
local keep = tonumber(ARGV[4])
if keep > 0 and n > keep then redis.call('LTRIM', lk, -keep, -1) end
return math.min(n, keep > 0 and keep or n)
