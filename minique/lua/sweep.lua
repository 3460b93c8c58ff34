-- Applies retention to queues that have gone quiet (finishing jobs applies it otherwise,
-- see includes/retention.lua). Returns how many jobs it removed.
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
-- lua/finish.lua): a re-send comes within seconds, so a record ten minutes old is spent.
-- A random sample per call keeps the work bounded and still empties both in time.
-- (A sample of 200 a minute per worker keeps up with 200 new producers a minute, a
-- Queue made per web request at about 3 a second, with the hash at twice its live size.)
local stale = now - 600000
local producers = redis.call('HRANDFIELD', BASE .. ':producers', 200, 'WITHVALUES')
local spent = {}
for i = 1, #producers, 2 do
  local ms = tonumber(string.match(producers[i + 1], '|(%d+)$'))
  if not ms or ms < stale then
    spent[#spent + 1] = producers[i]
    -- A record goes with the notes it lists (includes/producers.lua): at most 49.
    local noted = string.match(producers[i + 1], '^%d+:?[%d,]*;([%d,]*)')
    for n in string.gmatch(noted or '', '%d+') do spent[#spent + 1] = producers[i] .. ':' .. n end
    if #spent >= 1000 then  -- (unpack's limit is some 8,000 values)
      redis.call('HDEL', BASE .. ':producers', unpack(spent))
      spent = {}
    end
  end
end
if spent[1] then redis.call('HDEL', BASE .. ':producers', unpack(spent)) end
local calls = redis.call('HRANDFIELD', BASE .. ':calls', 200, 'WITHVALUES')
for i = 1, #calls, 2 do
  local ok, r = pcall(cmsgpack.unpack, calls[i + 1])
  if not ok or type(r) ~= 'table' or not tonumber(r[5]) or tonumber(r[5]) < stale then
    redis.call('HDEL', BASE .. ':calls', calls[i])
  end
end
return removed
