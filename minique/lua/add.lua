-- Adds a batch of jobs (add() sends one, add_bulk() a chunk), each to waiting,
-- prioritized or delayed. A custom id that exists already is left untouched.
-- ARGV: JP, n (negative when a job of the call has a custom id), producer, seq, nt, then
-- nt option tails of 5: opts, priority, delay_ms,
-- group ('' for none: see includes/groups.lua), dedup ("ttl_ms|flags|dedup id" or "": a
-- job whose dedup id is taken is not added; the existing job's id comes back as a
-- duplicate, see includes/dedup.lua); then per job: id, name, data, the number (from 1)
-- of its tail, or 0 for the plain tail ('', 0, 0, '', ''), which is not sent. Jobs added
-- with the same options share a tail, so a bulk of plain jobs sends 4 arguments a job
-- rather than 9 (each costs the server a parse and a Lua string, ~1k instructions).
-- Every id is chosen by the client (automatic ones from blocks it reserves with INCRBY on
-- the id counter), and every call carries the producer's next sequence number: a call
-- whose number the producer's record says ran is a re-send (a client retry after a
-- timeout, when the first send may have run), and changes nothing. The record is exact
-- about the last SEEN_WINDOW numbers below the highest that ran (which ran, which did
-- not), since a producer pipelines its calls (Queue._stream_adds, at most
-- ADD_PIPELINE_DEPTH in flight): a call Redis refused unrun (its functions flushed, still
-- loading) whose refusal was lost with the connection, while a later call ran, goes again
-- with its number and runs then; a call that ran and whose re-send was refused unrun goes
-- a third time and is told a re-send. (A record of the highest number alone took the
-- first for a re-send, its jobs told added and lost, or made the client give the second a
-- new number, its jobs added twice: break round 33.) Further below the highest, a number
-- counts as seen, as before.
-- Returns {0, id, duplicate (0/1), ..., now}, for a re-send {1, then (place, id,
-- duplicate) for each job whose outcome it noted (see notes below), now}, or {2, id, ...} as
-- 0 when the producer must reserve automatic ids afresh (see below).
--@include base
--@include dedup
--@include job_fields
--@include producers
local n = tonumber(ARGV[2])
local custom_ids = n < 0  -- (automatic ids are digits, custom ones never: options.py)
if custom_ids then n = -n end
local JB = 6 + tonumber(ARGV[5]) * 5  -- the first job's arguments
local producer, seq = ARGV[3], tonumber(ARGV[4])
local now = now_ms()
local now_s = int_str(now)
-- Producers' records (includes/producers.lua) live in one hash, BASE .. ':producers'; the sweep drops
-- those of producers gone quiet (sweep.lua). This call's record, once it has run:
local producer_head, producer_kept = '', nil
local out = {0}
if producer ~= '' then
  -- A producer's calls trim the events stream at its first and every 32nd: between them,
  -- the stream outgrows its cap by at most 31 calls' entries per producer (a one-job add
  -- writes one or two), and every other transition's call trims as before.
  if seq % 32 ~= 1 then skip_first_trim() end
  local last = redis.call('HGET', BASE .. ':producers', producer)
  local head, kept, resent = producer_turn(last, ARGV[4], producer, now)
  if not head then
    -- A re-send: with the fresh ids its first run gave jobs whose automatic id existed
    -- (below), so that the producer returns the jobs it added.
    return resent
  end
  producer_head, producer_kept = head, kept
  if not last and seq > 1 then
    -- The producer has called before, yet its record is gone: the queue was obliterated
    -- (the id counter with it) or the sweep dropped a quiet producer. Ids the producer
    -- reserved before may then be handed out again: the counter is moved past this call's
    -- automatic ids, and the reply (2) tells the producer to reserve afresh. Ids taken
    -- meanwhile by others show up as existing (check_each below).
    local top = 0
    for i = 0, n - 1 do top = math.max(top, tonumber(string.match(ARGV[JB + i * 4], '^%d+$')) or 0) end
    if (tonumber(redis.call('GET', K.idc)) or 0) < top then redis.call('SET', K.idc, int_str(top)) end
    out[1] = 2
  end
end
-- One EXISTS over every id of the call rather than one per job (a redis.call costs more
-- than the lookup): when none exists, as automatic ids never do, only an id repeated
-- within the call can be a duplicate, and `added` catches that.
local check_each = false
-- A custom id still in the held set without its hash is a held job deleted behind the
-- queue's back (a DEL, an eviction): adding it again moves the held version on, so that
-- its holder's completion, written without a read (finish.lua, trusted completions),
-- cannot land on the new job. (Automatic ids never come back; the client says whether a
-- call has custom ids, so that other calls skip the check: a ZSCORE for every add was
-- 3.3k instructions, 2.3 % of an add, and a Lua test of each id for digits 1.2k.)
if n == 1 then  -- (no tables for the one job of an add(): each costs ~1.4k instructions)
  check_each = redis.call('EXISTS', JP .. ARGV[JB]) == 1
  if custom_ids and not check_each and redis.call('ZSCORE', K.held, ARGV[JB]) then
    held_changed()
  end
elseif n > 1 then
  local jks, ids = {}, custom_ids and {} or nil
  for i = 0, n - 1 do
    local id = ARGV[JB + i * 4]
    jks[i + 1] = JP .. id
    if ids then ids[i + 1] = id end
  end
  for i = 1, n, 4000 do
    local last = math.min(i + 3999, n)
    if redis.call('EXISTS', unpack(jks, i, last)) > 0 then check_each = true end
    if ids then
      local scores = redis.call('ZMSCORE', K.held, unpack(ids, i, last))
      for j = 1, last - i + 1 do
        if scores[j] and redis.call('EXISTS', jks[i + j - 1]) == 0 then held_changed() end
      end
    end
  end
end
-- Ids added by this call, for an id repeated within it (none can be, with one job).
local added = n > 1 and {} or nil
-- (place in the call from 0, id, duplicate) of the jobs whose outcome a re-send could not
-- tell, or nil.
local notes = nil
for i = 0, n - 1 do
  local b = JB + i * 4
  local id, name, data = ARGV[b], ARGV[b + 1], ARGV[b + 2]
  local tail = ARGV[b + 3]
  local opts, prio_s, delay_s, group, dedup = '', '0', '0', '', ''
  local prio, delay = 0, 0
  if tail ~= '0' then
    local t = 6 + (tonumber(tail) - 1) * 5
    opts, prio_s, delay_s, group, dedup = ARGV[t], ARGV[t + 1], ARGV[t + 2], ARGV[t + 3],
                                          ARGV[t + 4]
    prio, delay = tonumber(prio_s), tonumber(delay_s)
  end
  local dup = 0
  local dd_field, fresh_id = nil, false
  if check_each and not (added and added[id]) and string.match(id, '^%d+$')
      and redis.call('EXISTS', JP .. id) == 1 then
    -- An automatic id that exists was handed out twice (the counter was reset under a
    -- producer's reserved block): it is no duplicate; the job takes a fresh id instead.
    for _ = 1, 10 do
      id = int_str(redis.call('INCR', K.idc))
      if redis.call('EXISTS', JP .. id) == 0 then break end
    end
    fresh_id = true
  end
  local exists = check_each and not (added and added[id]) and redis.call('EXISTS', JP .. id) == 1
  -- A job removed while a worker held it is gone once its hold ran out (base.lua).
  if exists and free_removed(JP .. id, id, now) then exists = false end
  if (added and added[id]) or exists then
    dup = 1
    emit('ev', 'duplicated', 'id', id)
  elseif dedup ~= '' then
    local existing
    existing, dd_field = dedup_claim(dedup, id, now, delay, data, {name, opts, prio_s, group})
    if existing then dup, id = 1, existing end
  end
  if dup == 0 then
    if added then added[id] = true end
    local jk = JP .. id
    local fields = job_fields(name, data, opts, prio_s, now_s)
    if group ~= '' then
      fields[#fields + 1] = 'g'; fields[#fields + 1] = group
      fields.group = group
    end
    if dd_field then fields[#fields + 1] = 'dd'; fields[#fields + 1] = dd_field end
    emit_batched('added', id, name)
    if delay > 0 then
      -- Blocked workers sleep until the earliest due time they know of; a job due sooner
      -- must rouse them so they shorten their sleep.
      local first = redis.call('ZRANGE', K.delayed, 0, 0, 'WITHSCORES')
      if not first[2] or (now + delay) * DELAY_SHIFT < tonumber(first[2]) then wake() end
      enqueue_delayed(jk, id, now + delay, fields, prio)
      emit('ev', 'delayed', 'id', id, 'delay', delay_s)
    else
      enqueue_ready(jk, id, prio, fields)
      emit_batched('waiting', id)
    end
  end
  out[#out + 1] = id
  out[#out + 1] = dup
  if (fresh_id or dup == 1) and producer ~= '' then
    -- Kept for a re-send of this call (its reply may be lost): what the call's state
    -- then could not tell (includes/producers.lua). A duplicate's holder may be gone by
    -- then, its dedup id free again (break round 35: the re-send returned a job never
    -- made); a fresh id is nowhere else.
    notes = notes or {}
    -- (By place in the call, not by the id sent: one call may send an id twice, the
    -- first a duplicate and the second new; break round 36.)
    notes[#notes + 1] = i; notes[#notes + 1] = id; notes[#notes + 1] = dup
  end
end
if producer ~= '' then
  if notes then
    -- The record lists the numbers with notes, so that they go once spent
    -- (includes/producers.lua).
    producer_head = producer_head .. (string.find(producer_head, ';', 1, true) and ',' or ';')
      .. ARGV[4]
  end
  local record_s = (producer_kept and producer_head .. '|' .. producer_kept or producer_head)
    .. '|' .. now_s
  if notes then
    redis.call('HSET', BASE .. ':producers', producer, record_s,
               producer .. ':' .. ARGV[4], cmsgpack.pack(notes) .. '|' .. now_s)
  else
    redis.call('HSET', BASE .. ':producers', producer, record_s)
  end
end
flush_events()
out[#out + 1] = now
return out
