-- Moves up to `count` ready jobs to active, and up to `hold` more to held (see
-- includes/take.lua). ARGV: JP, count, lease_ms, worker, limiter_max, limiter_window_ms,
-- promote_limit[, hold, hold_ms]
--@include base
--@include take
return take_jobs(now_ms(), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5]),
                 tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8]) or 0,
                 tonumber(ARGV[9]) or 0)
