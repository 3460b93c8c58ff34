-- Applies retention to queues that have gone quiet (finishing jobs applies it otherwise,
-- see includes/retention.lua). Returns {jobs removed, more}: more is 1 when the last of
-- its samples of producers' records was still half spent (Queue.sweep calls again).
-- ARGV: JP, budget
--@include base
--@include retention
local now = now_ms()
local budget = tonumber(ARGV[2])
local removed = trim_finished(K.completed, now, budget)
if removed < budget then
  removed = removed + trim_finished(K.failed, now, budget - removed)
end
-- Idempotency records of producers and workers that have gone quiet (lua/add.lua,
-- lua/finish.lua). A producer's record must outlive any copy of its calls still on the
-- way, or that copy would run as new and add its jobs twice: a client's own re-sends end
-- within about a minute, and a copy a client's kernel already sent is retransmitted for
-- at most about 17.5 minutes and then dropped (Linux's default tcp_retries2 of 15: a
-- 924.6 s bound, passed at the next retransmission timeout, which is at most 120 s; a
-- closed socket gives up sooner). So a record goes after 30 minutes of quiet.
-- Random samples keep the work bounded: up to 5 of 200 records a call while at least half
-- of a sample is spent. Queue.sweep calls again while the last sample was half spent (up
-- to 20 calls a sweep): 1,000 records a sweep fell behind 20 Queues made a second, each a
-- producer of its own, and the hash grew by some 600 a minute (break round 37).
local producers_key = BASE .. ':producers'
local stale = now - 1800000
local more = 0
for round = 1, 5 do
  local sample = redis.call('HRANDFIELD', producers_key, 200, 'WITHVALUES')
  local spent, gone = {}, 0
  for i = 1, #sample, 2 do
    local ms = tonumber(string.match(sample[i + 1], '|(%d+)$'))
    if not ms or ms < stale then
      gone = gone + 1
      spent[#spent + 1] = sample[i]
      -- A record goes with the notes it lists (includes/producers.lua): at most 49.
      local noted = string.match(sample[i + 1], '^%d+:?[%d,]*;([%d,]*)')
      for n in string.gmatch(noted or '', '%d+') do spent[#spent + 1] = sample[i] .. ':' .. n end
      if #spent >= 1000 then  -- (unpack's limit is some 8,000 values)
        redis.call('HDEL', producers_key, unpack(spent))
        spent = {}
      end
    end
  end
  if spent[1] then redis.call('HDEL', producers_key, unpack(spent)) end
  if gone * 4 < #sample then break end  -- (#sample counts fields and values)
  if round == 5 then more = 1 end
end
local calls = redis.call('HRANDFIELD', BASE .. ':calls', 200, 'WITHVALUES')
for i = 1, #calls, 2 do
  local ok, r = pcall(cmsgpack.unpack, calls[i + 1])
  if not ok or type(r) ~= 'table' or not tonumber(r[5]) or tonumber(r[5]) < stale then
    redis.call('HDEL', BASE .. ':calls', calls[i])
  end
end
return {removed, more}
