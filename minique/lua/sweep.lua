-- Applies retention to queues that have gone quiet (finishing jobs trims lazily otherwise),
-- with the policy that finishing jobs last applied to each set (none recorded: no trimming).
-- ARGV: JP, budget
--@include base
--@include retention
local now = now_ms()
local budget = tonumber(ARGV[2])
local removed = 0
for _, set_key in ipairs({K.completed, K.failed}) do
  local policy = redis.call('HGET', K.meta, 'keep:' .. set_key)
  if policy then
    local kc, ka = string.match(policy, '^(-?%d+):(-?%d+)$')
    if kc then
      removed = removed + trim_finished(set_key, tonumber(kc), tonumber(ka), now, budget)
    end
  end
end
-- Idempotency records of producers and workers that have gone quiet (lua/add.lua,
-- lua/finish.lua): a re-send comes within seconds, so a record ten minutes old is spent.
-- A random sample per call keeps the work bounded and still empties both in time.
local stale = now - 600000
local producers = redis.call('HRANDFIELD', QB .. ':producers', 50, 'WITHVALUES')
for i = 1, #producers, 2 do
  local ms = tonumber(string.match(producers[i + 1], '|(%d+)$'))
  if not ms or ms < stale then redis.call('HDEL', QB .. ':producers', producers[i]) end
end
local calls = redis.call('HRANDFIELD', QB .. ':calls', 50, 'WITHVALUES')
for i = 1, #calls, 2 do
  local ok, r = pcall(cmsgpack.unpack, calls[i + 1])
  if not ok or type(r) ~= 'table' or not tonumber(r[5]) or tonumber(r[5]) < stale then
    redis.call('HDEL', QB .. ':calls', calls[i])
  end
end
return removed
