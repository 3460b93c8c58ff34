-- Token bucket shared by every worker for one (account, operation).
-- KEYS[1]: the bucket hash. ARGV[1]: refill rate per second. ARGV[2]: burst.
-- ARGV[3]: "take" (consume one token if available) or "drain" (Amazon said 429: empty it).
-- Returns milliseconds to wait before a token is available; 0 means one was taken.
-- It never sleeps: the caller decides whether to wait or to re-enqueue the job.
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000

local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = burst
  ts = now
end
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)

local wait_ms = 0
if ARGV[3] == 'drain' then
  tokens = 0
elseif tokens >= 1 then
  tokens = tokens - 1
else
  wait_ms = math.ceil((1 - tokens) / rate * 1000)
end

redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', tokens), 'ts', string.format('%.6f', now))
-- A full bucket carries no information, so let idle buckets disappear.
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return wait_ms
