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
return removed
