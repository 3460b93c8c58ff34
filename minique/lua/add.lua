-- Adds a batch of jobs (add() sends one, add_bulk() a chunk), each to waiting,
-- prioritized or delayed. A custom id that exists already is left untouched.
-- ARGV: JP, n, then per job: id ('' = auto), name, data, opts, priority, delay_ms
--@include base
local n = tonumber(ARGV[2])
local now = now_ms()
local now_s = int_str(now)
local out = {}
-- Automatic ids for the whole batch come from one INCRBY.
local auto = 0
for i = 0, n - 1 do
  if ARGV[3 + i * 6] == '' then auto = auto + 1 end
end
local next_id = auto > 0 and redis.call('INCRBY', K.idc, auto) - auto or 0
for i = 0, n - 1 do
  local b = 3 + i * 6
  local id = ARGV[b]
  local prio, delay = tonumber(ARGV[b + 4]), tonumber(ARGV[b + 5])
  local dup = 0
  if id == '' then
    next_id = next_id + 1
    id = int_str(next_id)
  elseif redis.call('EXISTS', JP .. id) == 1 then
    dup = 1
    emit('ev', 'duplicated', 'id', id)
  end
  if dup == 0 then
    local jk = JP .. id
    local fields = {'n', ARGV[b + 1], 'd', ARGV[b + 2], 'o', ARGV[b + 3], 'p', ARGV[b + 4],
                    'ts', now_s, 'atm', '0', 'ats', '0'}
    emit('ev', 'added', 'id', id, 'name', ARGV[b + 1])
    if delay > 0 then
      -- Blocked workers sleep until the earliest due time they know of; a job due sooner
      -- must rouse them so they shorten their sleep.
      local first = redis.call('ZRANGE', K.delayed, 0, 0, 'WITHSCORES')
      if not first[2] or (now + delay) * DELAY_SHIFT < tonumber(first[2]) then wake() end
      enqueue_delayed(jk, id, now + delay, fields)
      emit('ev', 'delayed', 'id', id, 'delay', ARGV[b + 5])
    else
      enqueue_ready(jk, id, prio, fields)
      emit('ev', 'waiting', 'id', id)
    end
  end
  out[#out + 1] = id
  out[#out + 1] = dup
end
out[#out + 1] = now
return out
