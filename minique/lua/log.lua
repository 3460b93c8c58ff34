-- Appends a line to a job's log, keeping the last ARGV[4] lines (0 = all). Returns how
-- many lines the log holds.
-- ARGV: JP, id, line, keep, call id (16 hex digits, the same in every re-send)
-- A re-send of a call (redis-py, after a timeout) finds "call id:count" among the job's
-- last RECENT_CALLS calls ('lgc') and gets the first answer back: the line is appended
-- once. Kept in the job, not in the queue's kept answers (wrappers/once.lua): a job may log
-- thousands of lines a second, and the record stays the size of RECENT_CALLS calls.
--@include base
local RECENT_CALLS = 8
local id, call_id = ARGV[2], ARGV[5]
local jk = JP .. id
local f = redis.call('HMGET', jk, 'st', 'lgc')
if not f[1] and redis.call('EXISTS', jk) == 0 then
  return redis.error_reply('NOTFOUND job ' .. id)
end
local recent = f[2] or ''
local kept = string.match(recent, call_id .. ':(%d+)')
if kept then return tonumber(kept) end
local lk = LP .. id
local n = redis.call('RPUSH', lk, ARGV[3])
-- The queue has logs: retention deletes them with their jobs (base.lua delete_jobs_keys).
-- (At every line, not only a log's first: logs written before the mark existed count too.)
redis.call('HSETNX', K.meta, 'xl', '1')
local keep = tonumber(ARGV[4])
if keep > 0 and n > keep then redis.call('LTRIM', lk, -keep, -1) end
n = math.min(n, keep > 0 and keep or n)
local calls = {call_id .. ':' .. n}
for entry in string.gmatch(recent, '[^,]+') do
  if #calls == RECENT_CALLS then break end
  calls[#calls + 1] = entry
end
redis.call('HSET', jk, 'lgc', table.concat(calls, ','))
return n
