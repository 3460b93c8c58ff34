-- Renews the leases of a worker's jobs (active and held) in one call.
-- ARGV: JP, lease_ms, then pairs id, token. Returns {lost ids, ids whose cancel was asked}.
-- Runs while Redis is out of memory (it only moves scores of members already there): a
-- renewal refused for memory let the lease run out while the job ran on, and another
-- worker's stall check took it back and ran it again.
--@include base
--@allow-oom
local deadline = now_ms() + tonumber(ARGV[2])
local lost, cancel = {}, {}
for i = 3, #ARGV, 2 do
  local id, tok = ARGV[i], ARGV[i + 1]
  local f = redis.call('HMGET', JP .. id, 'tok', 'cx', 'st')
  local set_key = lease_set(f[3])
  -- XX: a job no longer in the set (taken back, finished) is never put back.
  if f[1] == tok and redis.call('ZADD', set_key, 'XX', 'CH', lease_score(deadline, i), id) == 1 then
    if f[2] then cancel[#cancel + 1] = id end
  elseif f[1] == tok and redis.call('ZSCORE', set_key, id) then
    if f[2] then cancel[#cancel + 1] = id end  -- the same score: renewed twice this ms
  else
    lost[#lost + 1] = id
  end
end
return {lost, cancel}
