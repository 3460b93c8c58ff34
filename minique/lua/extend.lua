-- Renews the leases of a worker's active jobs in one call.
-- ARGV: JP, lease_ms, then pairs id, token. Returns {lost ids, ids whose cancel was asked}.
--@include base
local deadline = now_ms() + tonumber(ARGV[2])
local lost, cancel = {}, {}
for i = 3, #ARGV, 2 do
  local id, tok = ARGV[i], ARGV[i + 1]
  local f = redis.call('HMGET', JP .. id, 'tok', 'cx')
  if f[1] == tok and redis.call('ZSCORE', K.active, id) then
    redis.call('ZADD', K.active, 'XX', lease_score(deadline, i), id)
    if f[2] then cancel[#cancel + 1] = id end
  else
    lost[#lost + 1] = id
  end
end
return {lost, cancel}
