-- Appends a line to a job's log, keeping the last ARGV[4] lines (0 = all). Returns how
-- many lines the log holds.
-- ARGV: JP, id, line, keep, call id
-- A re-send of the call (redis-py, after a timeout) finds "call id|count" in the job's
-- 'lgc' and gets the first answer back: the line is appended once.
--@include base
--@call_id
local jk = JP .. ARGV[2]
local f = redis.call('HMGET', jk, 'st', 'lgc')
if not f[1] and redis.call('EXISTS', jk) == 0 then
  return redis.error_reply('NOTFOUND job ' .. ARGV[2])
end
if f[2] and string.sub(f[2], 1, #call_id + 1) == call_id .. '|' then
  return tonumber(string.sub(f[2], #call_id + 2))
end
local lk = LP .. ARGV[2]
local n = redis.call('RPUSH', lk, ARGV[3])
local keep = tonumber(ARGV[4])
if keep > 0 and n > keep then redis.call('LTRIM', lk, -keep, -1) end
n = math.min(n, keep > 0 and keep or n)
redis.call('HSET', jk, 'lgc', call_id .. '|' .. n)
return n
