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
return removed
