-- Frees a dedup id at once (Queue.remove_deduplication_key, BullMQ's
-- removeDeduplicationKey): the next add with it adds a job, and an add kept
-- (keep_last_if_active) is added now (base.lua release_dedup). ARGV: JP, dedup id.
-- Returns 1 if it was held, else 0.
-- Once (a re-send gets the first reply): a re-send must answer as the first send did, and
-- must not free the id again once a later add took it.
--@include base
--@once
local did = ARGV[2]
local cur = redis.call('GET', DEDUP_PREFIX .. did)
if not cur then return 0 end
release_dedup(did, cur, true)
return 1
