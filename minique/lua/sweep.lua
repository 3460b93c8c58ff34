-- Applies retention to queues that have gone quiet (finishing jobs trims lazily otherwise).
-- ARGV: JP, completed_keep_count, completed_keep_age_ms, failed_keep_count, failed_keep_age_ms, budget
--@include base
--@include retention
local now = now_ms()
local budget = tonumber(ARGV[6])
local n = trim_finished(K.completed, tonumber(ARGV[2]), tonumber(ARGV[3]), now, budget)
return n + trim_finished(K.failed, tonumber(ARGV[4]), tonumber(ARGV[5]), now, budget)
