-- Shared by every transition. KEYS always start with the queue's key vector, in this
-- order (minique/keys.py builds it); ARGV[1] is the job key prefix "{p:q}:j:".
-- The library is loaded once (minique/scripts.py) and its functions are called many
-- times, so what depends on the call is set by begin_call (includes/call.lua): the key
-- table K, the prefixes below, and every per-call cache.
local K = {}
local KEY_ORDER = {'meta', 'idc', 'ready', 'pri', 'delayed', 'active', 'completed', 'failed',
                   'events', 'wake', 'window', 'pause_until', 'held', 'held_removed'}
-- Each key of the vector is the queue's hash tag and its suffix (minique/keys.py). A call
-- may send the meta key alone (add does): every key sent costs the server about as much
-- as a small command (~1.2k instructions), and begin_call derives the others from it
-- (flows.lua's in_queue too, for another queue).
local KEY_SUFFIX = {':meta', ':id', ':ready', ':prioritized', ':delayed', ':active',
                    ':completed', ':failed', ':events', ':wake', ':limiter', ':rate-limited',
                    ':held', ':held-removed'}
-- How many keys the vector has: scripts that take keys of their own read them after it.
-- (Helpers used by one function alone live in a do-block with it: EVAL mode compiles the
-- includes and a transition as one chunk, and Lua allows 200 locals in one.)
local NK = 14
-- The call's ARGV, for includes that read arguments beyond the first.
local CALL_ARGV
local JP
-- The queue's hash tag "{p:q}", for the keys and channels the vector does not carry.
local BASE
-- The meta key of the queue whose keys and prefixes (BASE and the others begin_call sets)
-- were derived last, or nil when they must be derived again: flows.lua's in_queue
-- switches them to another queue for a while, and a call that fails in between leaves
-- them switched.
local DERIVED_FOR
-- Job log lists have a key space of their own ("{p:q}:logs:<id>"), as job hashes do
-- ("{p:q}:j:<id>"): no job id, whatever its characters, can name another job's keys.
local LP
-- Priority score = priority * 2^32 + sequence, so FIFO holds within one priority.
local PRIO_SHIFT = 4294967296
-- Delayed score = due_ms * 4096 + sequence: FIFO among jobs due in the same millisecond,
-- and still an exact integer in a double (due_ms < 2^41).
local DELAY_SHIFT = 4096

-- One command over a whole batch (one redis.call costs about as much as the work it does
-- for a small set), in chunks because unpack() is limited to a few thousand values.
-- `args` must hold whole groups (e.g. score/member pairs) per 4000 values.
local function call_batched(cmd, key, args)
  for i = 1, #args, 4000 do
    redis.call(cmd, key, unpack(args, i, math.min(i + 3999, #args)))
  end
end

-- Integer to string: a Lua number passed to redis.call is formatted with "%.17g", a
-- floating-point path that cost ~10% of the server's time in the hot scripts.
-- Small counts (attempts) come from this table: string.format costs ~1.5k instructions.
-- (Written out: the standard libraries are not there while the library loads.)
local SMALL_INT_STR = {[0] = '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', '10', '11',
  '12', '13', '14', '15', '16', '17', '18', '19', '20', '21', '22', '23', '24', '25', '26',
  '27', '28', '29', '30', '31', '32', '33', '34', '35', '36', '37', '38', '39', '40', '41',
  '42', '43', '44', '45', '46', '47', '48', '49', '50', '51', '52', '53', '54', '55', '56',
  '57', '58', '59', '60', '61', '62', '63'}
local function int_str(n)
  return SMALL_INT_STR[n] or string.format('%d', n)
end
-- The other way, for the counts read from job hashes: tonumber() goes through strtod.
local SMALL_INT_NUM = {}
for i = 0, 63 do SMALL_INT_NUM[SMALL_INT_STR[i]] = i end
-- A stored count (a string, or false/nil when absent) as a number, absent = `default`.
local function count_num(s, default)
  return SMALL_INT_NUM[s] or tonumber(s) or default
end

-- The active set's score is the lease deadline, negated and in thousandths of a ms, minus
-- the job's place in its batch: the newest lease sorts first. A small sorted set is a
-- listpack that an insert scans from its head, so each new lease stops at the first entry
-- instead of walking the whole set, which had been the largest single cost of a fetch.
local function lease_score(deadline, i)
  return int_str(-(deadline * 1000 + i % 1000))
end
-- The same for the jobs of one take, which share a deadline: '-' .. deadline formatted once
-- (lease_prefix), then the place as three digits (string.format costs ~1.5k instructions).
local PAD3 = {}
for i = 0, 999 do PAD3[i] = (i < 10 and '00' or (i < 100 and '0' or '')) .. i end
local function lease_prefix(deadline) return '-' .. int_str(deadline) end
local function lease_score_at(prefix, i) return prefix .. PAD3[i % 1000] end

-- Lowest score of an expired lease, and the deadline (ms) a score stands for.
local function expired_from(now) return int_str(-(now * 1000 + 999)) end
local function lease_deadline(score) return math.floor(-tonumber(score) / 1000) end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- The largest return value or failure reason that a completed or failed event carries.
local EVENT_VALUE_MAX = 16384

-- Meta fields that the worker's transitions read on every call (pause, limits, the marks
-- of features a queue has used, the events cap, the finished states' retention), in one
-- HMGET the first time one is needed: each was a redis.call of its own, and a call costs
-- more than the lookup. A field the call itself writes is written here too (meta_set).
-- Absent fields read as false.
local meta_cache = nil
local function meta_marks()
  if not meta_cache then
    local fields = {'gwn', 'xr', 'xs', 'gconc', 'cv', 'paused', 'hu', 'emax', 'gx',
                    'keep:' .. K.completed, 'keep:' .. K.failed, 'fence', 'glim', 'nh', 'xl',
                    'ha', 'hv'}
    local v = redis.call('HMGET', K.meta, unpack(fields))
    meta_cache = {}
    for i, f in ipairs(fields) do meta_cache[f] = v[i] end
  end
  return meta_cache
end
-- Keeps the snapshot in step with a write of the call's own (no-op before the first read).
local function meta_set(field, value)
  if meta_cache then meta_cache[field] = value end
end

local emax = nil
local emitted = 0
-- Every 100th event of a script call trims the stream (MAXLEN ~); the others are plain
-- appends: a trim on every append cost about a third of an XADD, and this way the stream
-- exceeds its cap by at most 100 entries plus the node that MAXLEN ~ keeps.
local function append_event(...)
  if emitted % 100 == 0 then
    -- Kept as the string stored (see int_str on why numbers are avoided as arguments).
    -- From the meta snapshot when the call has read it (not worth a read of its own).
    if not emax then
      if meta_cache then emax = meta_cache.emax else emax = redis.call('HGET', K.meta, 'emax') end
      emax = emax or '10000'
    end
    redis.call('XADD', K.events, 'MAXLEN', '~', emax, '*', ...)
  else
    redis.call('XADD', K.events, '*', ...)
  end
  emitted = emitted + 1
end

-- For a caller that trims on a schedule of its own (add.lua: a producer's first call and
-- every 32nd): the call's first event is then a plain append. The HGET of the cap and the
-- trim check cost a one-job add about 8k instructions (4%) for a stream that had grown by
-- two entries; the 100th event of a call still trims.
local function skip_first_trim()
  if emitted == 0 then emitted = 1 end
end

-- Events that a script call emits for many jobs at once ('added' and 'waiting' at add,
-- 'active' at fetch, 'completed' at finish) share one stream entry per kind: 'ev' <name>
-- 'ids' <list>, plus 'names' <list> of job names for 'added', and 'rvs' <list> of return
-- values for 'completed' ('' where a value stays with its job). A list is
-- length-prefixed ("<bytes>:<bytes of the item>" per item), so that any id or value fits.
-- One entry instead of one per job saves an XADD and a stream entry per job; an event of
-- one job alone keeps the one-job form ('id', and 'rv'). minique/events.py reads both.
-- Order: a job's 'active' comes before its 'completed' (a held job may start and finish
-- within one call), and every event emitted one by one first writes what is gathered.
-- Such jobs (kind 'run': a held job that started and completed between two calls, most
-- jobs of a busy worker) share one entry: their 'completed' events with 'first' 'active',
-- the same jobs' active events before them, where two entries listed the ids twice (~2k
-- instructions a job). A reader of the format's version 2 ignores 'first' and sees the
-- completions alone.
-- Size: an entry is written once its values reach EVENT_VALUE_MAX, so that no entry is
-- much larger than a one-job event could be, and the stream's cap (in entries) still
-- bounds its memory as before.
local BATCHED_NAMES = {'added', 'waiting', 'active', 'completed', 'run'}
-- The per-job value a kind carries: its field in a one-job entry, and in a shared one.
local BATCHED_VALUE = {added = {'name', 'names'}, completed = {'rv', 'rvs'}, run = {'rv', 'rvs'}}
-- What emit_batched gathered, per kind. The lists are made once, with the library, and
-- emptied by their count: new ones per call had cost a one-job add four tables (~1.4k
-- instructions each, with their collection). Items past `n` are left from earlier calls
-- and never read; they hold at most about EVENT_VALUE_MAX bytes per kind.
local BATCHED = {}
for i = 1, #BATCHED_NAMES do  -- (the library's load sees no globals, ipairs included)
  BATCHED[BATCHED_NAMES[i]] = {ids = {}, rvs = {}, n = 0, bytes = 0}
end
local pending = false
local function clear_batched()
  for i = 1, #BATCHED_NAMES do
    local b = BATCHED[BATCHED_NAMES[i]]
    b.n, b.bytes = 0, 0
  end
  pending = false
end

local flush_events
-- `started_here` (a 'completed' event): the job's 'active' event comes first, in the same
-- entry (the kind 'run' gathers such jobs).
local function emit_batched(name, id, rv, started_here)
  local b = BATCHED[started_here and 'run' or name]
  pending = true
  local n = b.n + 1
  b.n = n
  b.ids[n] = id
  rv = rv or ''
  b.rvs[n] = rv
  b.bytes = b.bytes + #rv + #id
  if b.bytes >= EVENT_VALUE_MAX then flush_events() end
end

local function length_prefixed(items, n)
  local parts = {}
  -- Lua turns a number into a string with "%.14g" (the floating-point printf, slow):
  -- once per distinct length, most items of a list having the same few lengths.
  local prefixes = {}
  for i = 1, n do
    local len = #items[i]
    local prefix = prefixes[len]
    if not prefix then
      prefix = string.format('%d:', len)
      prefixes[len] = prefix
    end
    parts[2 * i - 1] = prefix
    parts[2 * i] = items[i]
  end
  return table.concat(parts)
end

do  -- (helpers of flush_events alone: a chunk holds at most 200 locals, see NK's note)
  -- The event name an entry of a kind carries, and the other name its jobs' events have
  -- ('then' after them, 'first' before them).
  local BATCHED_ENTRY = {run = {'completed', 'first', 'active'}}
  -- Whether the jobs of the gathered 'waiting' events are those of the 'added' ones, in order
  -- (add.lua's jobs that went to waiting, none delayed or a duplicate).
  local function all_added_waiting()
    local a, w = BATCHED.added, BATCHED.waiting
    if a.n == 0 or a.n ~= w.n then return false end
    for i = 1, a.n do
      if a.ids[i] ~= w.ids[i] then return false end
    end
    return true
  end

  -- One entry of gathered events; with `also`, the same jobs' events of `also_name` come
  -- 'then' (after them) or 'first' (minique/events.py reads fields in any order).
  local function append_entry(also, also_name, ...)
    if also then append_event(also, also_name, ...) else append_event(...) end
  end

  -- Writes what emit_batched gathered, one entry per event name; when every added job went
  -- waiting, one entry carries both ('then' 'waiting': the same jobs' waiting events follow
  -- their added ones), an XADD less per add call.
  function flush_events()
    if not pending then return end
    local merged = all_added_waiting()
    for i = 1, #BATCHED_NAMES do
      local name = BATCHED_NAMES[i]
      local b, value = BATCHED[name], BATCHED_VALUE[name]
      if b.n > 0 and not (merged and name == 'waiting') then
        local also, also_name = nil, nil
        if merged and name == 'added' then also, also_name = 'then', 'waiting' end
        local entry = BATCHED_ENTRY[name]
        if entry then name, also, also_name = entry[1], entry[2], entry[3] end
        if b.n == 1 then
          if value and b.rvs[1] ~= '' then
            append_entry(also, also_name, 'ev', name, 'id', b.ids[1], value[1], b.rvs[1])
          else
            append_entry(also, also_name, 'ev', name, 'id', b.ids[1])
          end
        elseif value then
          append_entry(also, also_name, 'ev', name, 'ids', length_prefixed(b.ids, b.n),
                       value[2], length_prefixed(b.rvs, b.n))
        else
          append_entry(also, also_name, 'ev', name, 'ids', length_prefixed(b.ids, b.n))
        end
      end
    end
    clear_batched()
  end
end

-- One event, after whatever emit_batched gathered before it.
local function emit(...)
  flush_events()
  append_event(...)
end

local woken = false
-- Wakes blocked workers for work that does not pass through the ready stream
-- (prioritized jobs, resume). Once per script call is enough.
local function wake()
  if not woken then
    woken = true
    redis.call('XADD', K.wake, 'MAXLEN', '~', 16, '*', 'w', '1')
  end
end

-- Writes a job's state fields, plus `fields` (a new job's own fields, or nil) in the same
-- HSET, so that adding a job writes its hash once. The state fields end at the first nil.
-- (The rest go through a table: select(i, ...) in a loop copies them all on every turn,
-- which cost a held job's finish ~4k instructions more than the table does.)
local function write_job(jk, fields, ...)
  if not fields then return redis.call('HSET', jk, ...) end
  if select('#', ...) == 4 then
    -- A state and one more field (every enqueue): appended without a table of them.
    local n, f1, v1, f2, v2 = #fields, ...
    if v2 ~= nil then
      fields[n + 1] = f1; fields[n + 2] = v1; fields[n + 3] = f2; fields[n + 4] = v2
      return redis.call('HSET', jk, unpack(fields))
    end
  end
  local args, more = fields, {...}
  local n = #args
  for i = 1, select('#', ...) do
    local v = more[i]
    if v == nil then break end
    args[n + i] = v
  end
  redis.call('HSET', jk, unpack(args))
end

-- A control changed (pause, drain, rate limit, global concurrency, a higher priority):
-- workers hand back the jobs they hold. They learn it from this message at once, from the
-- control version in their next reply, or when their hold runs out, whichever is first.
-- Returns how many ms are left of the longest hold granted: after that no held job starts.
-- The message is "<what>|<control version>": a worker whose last reply carried this version
-- or a later one has handed back what the change concerns already (minique/worker.py).
local function control_changed(what)
  local cv = int_str(redis.call('HINCRBY', K.meta, 'cv', 1))
  meta_set('cv', cv)
  redis.call('PUBLISH', BASE .. ':control', what .. '|' .. cv)
  local hu = tonumber(redis.call('HGET', K.meta, 'hu'))
  if not hu then return 0 end
  return math.max(0, hu - now_ms())
end

--@include groups

-- A job's group: a new job's fields carry it as fields.group (not an array entry, so not
-- written twice), a stored job has it in its hash.
local function job_group(jk, fields)
  if fields then return fields.group end
  return redis.call('HGET', jk, 'g')
end

-- A job that goes ahead of others (a priority, the head of the line) must not wait behind
-- jobs that workers hold, however it became waiting (added, fallen due, promoted, retried,
-- sent back, a flow's last child done): they hand them back, as a worker taking one job at
-- a time would take this one next. Once a call per queue: a call may reach several
-- (a flow's parent in another queue, includes/flows.lua in_queue), each told on its own
-- Per call, made when first needed (nil until then): queue base -> true once told;
-- 'due:' .. base -> the earliest due time told (enqueue_delayed). (One table for both:
-- a Lua chunk has room for 200 locals.)
local ahead_told = nil
local function give_way_to_ahead()
  if not (ahead_told and ahead_told[BASE]) and redis.call('EXISTS', K.held) == 1 then
    ahead_told = ahead_told or {}
    ahead_told[BASE] = true
    control_changed('priority')
  end
end

-- The priority-set score of a job made waiting now with priority `prio` (its job field
-- 'p'), at the end of its line; nil for a plain job (the stream, or a group's FIFO band).
-- prio -1 is a LIFO job (BullMQ's lifo, options.py wire_priority): the head of the plain
-- line, behind every priority band (all below 2^53, options.MAX_PRIORITY) and ahead of the
-- return band (2^54) and the stream: 2^54 - 2 * seq, newest first, exact in a double there
-- (whose step is 2) for seq below 2^50.
local function ready_score(prio)
  if prio > 0 then
    return int_str(prio * PRIO_SHIFT + redis.call('HINCRBY', K.meta, 'pc', 1) % PRIO_SHIFT)
  elseif prio < 0 then
    local LIFO_TOP, LIFO_SEQS = 18014398509481984, 1125899906842624  -- 2^54, 2^50
    return int_str(LIFO_TOP - 2 * (redis.call('HINCRBY', K.meta, 'lc', 1) % LIFO_SEQS))
  end
  return nil
end

-- The single place where a job becomes ready: prioritized and LIFO jobs go to the sorted
-- set, others to the stream, grouped jobs to their group. Every transition to "waiting"
-- goes through here.
local function enqueue_ready(jk, id, prio, fields)
  -- Ahead of plain jobs that workers hold: they hand them back.
  if prio ~= 0 then give_way_to_ahead() end
  local g = job_group(jk, fields)
  local score = ready_score(prio)
  if g then
    group_enqueue(g, jk, id, score, fields)
  elseif score then
    redis.call('ZADD', K.pri, score, id)
    write_job(jk, fields, 'st', 'waiting', 'sid', '')
    wake()
  else
    -- The entry's field names what the take must read (includes/take.lua read_stream):
    -- 'b' for a new job whose hash holds only its name, data and time (no options,
    -- priority, group, dedup id, parent; no attempt yet), 'i' for any other. (Asked of
    -- the fields before write_job appends the state fields to them.)
    local sid = redis.call('XADD', K.ready, '*', (fields and fields[7] == nil) and 'b' or 'i', id)
    write_job(jk, fields, 'st', 'waiting', 'sid', sid)
  end
end

-- Back to the head of the line: for a job that had already reached a worker (taken back
-- from a dead worker, rate limited, or returned at shutdown), so it does not queue again
-- behind everything added since. Scores below 2^32 sort before every priority band.
local function enqueue_front(jk, id)
  give_way_to_ahead()
  local seq = redis.call('HINCRBY', K.meta, 'fc', 1) % PRIO_SHIFT
  local g = job_group(jk)
  if g then return group_enqueue(g, jk, id, int_str(seq)) end
  redis.call('ZADD', K.pri, seq, id)
  redis.call('HSET', jk, 'st', 'waiting', 'sid', '')
  wake()
end

-- A held job handed back before it started goes back to the very place it was taken from:
-- `ps` is the priority-set score it was popped with, or '' for a job read from the stream,
-- which goes to the return band (after every priority, before the stream), in the order
-- of the stream entries they were read from ('sid', "ms-seq"), so that jobs several
-- workers hand back keep their order whichever comes back first: RETURN_BAND +
-- 4 * (ms * 2048 + seq) is exact in a double (whose step there is 4) while ms < 2^41
-- (2039, as the delayed set's scores); a seq past 2047 within one ms (bulk adds) shares
-- the last place of its ms. A job with no entry id goes before them, in the order it
-- comes back.
-- A held job whose priority became 0 (change_priority.lua: ps 'end') goes back to the end
-- of the plain line, as a job added now. (Constants local to the function: an EVAL
-- script has room for 200 top-level locals in all, includes/call.lua.)
-- With `tok`, `ps` is the job's field as stored: "<token>@<place>", written by the take
-- that popped it with a score (or by change_priority.lua) and valid only under that token.
-- A job read from the stream has none written (an absent field costs its write a scan and
-- an insert, ~3k instructions), so a field of an earlier token means the stream too.
local function enqueue_return(jk, id, ps, tok)
  local RETURN_BAND = 18014398509481984  -- 2^54
  if tok then
    ps = ps and string.sub(ps, 1, #tok + 1) == tok .. '@' and string.sub(ps, #tok + 2) or ''
  end
  if ps == 'end' then
    redis.call('HSET', jk, 'tok', '')
    return enqueue_ready(jk, id, 0)
  end
  local score = ps
  if not ps or ps == '' then
    local ms, seq = string.match(redis.call('HGET', jk, 'sid') or '', '^(%d+)-(%d+)$')
    if ms and tonumber(ms) < 2199023255552 then
      score = int_str(RETURN_BAND + 4 * (tonumber(ms) * 2048 + math.min(tonumber(seq), 2047)))
    else
      score = int_str(RETURN_BAND + 4 * (redis.call('HINCRBY', K.meta, 'rs', 1) % 1048576))
    end
  end
  local g = job_group(jk)
  if g then
    redis.call('HSET', jk, 'tok', '')
    group_enqueue(g, jk, id, score)
    -- A take that gave way to it waits for a wake-up (includes/take.lua), which a group
    -- in the round-robin already would not post.
    return wake()
  end
  redis.call('ZADD', K.pri, score, id)
  redis.call('HSET', jk, 'st', 'waiting', 'sid', '', 'tok', '')
  wake()
end

-- A held job changed by anyone but its holder (removed, drained, taken back from a dead
-- holder): the queue's held version (meta 'hv') moves on. A holder's completions of held
-- jobs handed out at the version still in force are written without a read of the job
-- (finish.lua, trusted completions).
local function held_changed()
  meta_set('hv', int_str(redis.call('HINCRBY', K.meta, 'hv', 1)))
end

-- A held job that remove() or drain() reached: out of the held set (it is no longer
-- waiting) into held_removed, with the same lease. Its worker deletes it when it hands it
-- back; if it had started already, its start or result takes it out and it runs on.
-- 'rmu': when the longest hold granted so far runs out; from then on the job cannot start
-- (what remove() and drain() wait out), so its id is free again (free_removed).
local function mark_held_removed(jk, id)
  local score = redis.call('ZSCORE', K.held, id)
  if not score then return 0 end
  held_changed()
  redis.call('ZREM', K.held, id)
  redis.call('ZADD', K.held_removed, score, id)
  local hu = redis.call('HGET', K.meta, 'hu') or '0'
  redis.call('HSET', jk, 'st', 'removed', 'rmu', hu)
  return 1
end

-- The set a taken job's lease lives in, by its stored state.
local function lease_set(st)
  if st == 'held' then return K.held end
  if st == 'removed' then return K.held_removed end
  return K.active
end

-- `prio`: the job's priority field when the caller knows it (nil: read from the job).
-- A job that will go ahead of what workers hold once it falls due (a priority, LIFO) is
-- also listed by due time in BASE .. ':delayed-ahead': a take grants no hold past the
-- first of them (take.lua), so held jobs stop starting when it falls due, as a worker
-- taking one job at a time would take it then. An entry goes when its job falls due
-- (take.lua promote_due), is promoted, removed, drained or cleaned.
-- Holds granted before it was listed run past its due time: while some job is held, the
-- workers hear of it ("due|<ms from now>|<id>" on the control channel; no control version,
-- as nothing changed yet) and start no held job from its due time on until a call of
-- theirs has taken it (minique/worker.py _on_due_ahead). Without the message only their
-- next reply would say so, which comes late on a loaded machine. One message per queue
-- and call unless a later job of the call falls due earlier: the holds a worker's next call
-- is granted stop at the earliest listed due time anyway. (Written out here and in
-- change_priority.lua: a Lua chunk has room for 200 locals.)
local function enqueue_delayed(jk, id, due, fields, prio)
  local seq = redis.call('HINCRBY', K.meta, 'ds', 1) % DELAY_SHIFT
  redis.call('ZADD', K.delayed, int_str(due * DELAY_SHIFT + seq), id)
  write_job(jk, fields, 'st', 'delayed', 'due', int_str(due))
  if (prio or tonumber(redis.call('HGET', jk, 'p')) or 0) ~= 0 then
    redis.call('ZADD', BASE .. ':delayed-ahead', int_str(due), id)
    local told = ahead_told and ahead_told['due:' .. BASE]
    if (not told or due < told) and redis.call('EXISTS', K.held) == 1 then
      ahead_told = ahead_told or {}
      ahead_told['due:' .. BASE] = due
      redis.call('PUBLISH', BASE .. ':control',
                 'due|' .. int_str(math.max(0, due - now_ms())) .. '|' .. id)
    end
  end
end

local function job_priority(jk)
  return tonumber(redis.call('HGET', jk, 'p')) or 0
end

-- A finished state keeps its jobs grouped by retention setting (includes/retention.lua):
-- the group of the state's shared setting in the state's set itself, every other group
-- in a set of its own, listed in the state's registry of groups.
local function group_set(set_key, keep_count, keep_age)
  return set_key .. ':keep:' .. int_str(keep_count) .. ':' .. int_str(keep_age)
end
local function groups_of(set_key) return set_key .. ':keeps' end

-- Every set that holds jobs of a finished state: its own first, then its groups'.
local function finished_sets(set_key)
  local sets = redis.call('SMEMBERS', groups_of(set_key))
  table.insert(sets, 1, set_key)
  return sets
end

-- Takes a job out of a finished state (whichever of its sets holds it).
local function unlist_finished(set_key, id)
  if redis.call('ZREM', set_key, id) == 0 then
    for _, key in ipairs(redis.call('SMEMBERS', groups_of(set_key))) do
      if redis.call('ZREM', key, id) == 1 then return end
    end
  end
end

-- Removes a job from whatever structure holds it. Returns the state it was in.
local function unlink_job(jk, id)
  local st, sid, g = unpack(redis.call('HMGET', jk, 'st', 'sid', 'g'))
  if st == 'waiting' then
    if g then group_unlink(g, id)
    elseif sid and sid ~= '' then redis.call('XDEL', K.ready, sid) else redis.call('ZREM', K.pri, id) end
  elseif st == 'delayed' then
    redis.call('ZREM', K.delayed, id)
    redis.call('ZREM', BASE .. ':delayed-ahead', id)
  elseif st == 'completed' then unlist_finished(K.completed, id)
  elseif st == 'failed' then unlist_finished(K.failed, id)
  elseif st == 'active' then redis.call('ZREM', K.active, id)
  elseif st == 'held' then
    redis.call('ZREM', K.held, id)
    held_changed()
  elseif st == 'waiting-children' then redis.call('ZREM', BASE .. ':waiting-children', id)
  end
  return st
end

-- Dedup keys ("{p:q}:dedup:<dedup id>" -> job id), listed in DEDUPS by expiry (ms, +inf
-- for those without a ttl) so that obliterate finds them: includes/dedup.lua.
local DEDUPS, DEDUP_PREFIX  -- BASE .. ':dedups', BASE .. ':dedup:' (begin_call)
-- Frees a dedup id that job `id` holds without a ttl (it finished or is deleted).
-- keep_last_if_active (BullMQ's keepLastIfActive, includes/dedup.lua): the last add made
-- with the id while the job was active waits in BASE .. ':dedup-next:' .. did. It is added
-- now, and takes the id, when the job `finished` (completed, failed for good, or the id
-- freed by remove_dedup.lua); it goes with a job deleted unfinished (removed, drained,
-- cleaned, obliterated).
local function release_dedup(did, id, finished)
  local dk = DEDUP_PREFIX .. did
  if redis.call('GET', dk) ~= id then return end
  redis.call('DEL', dk)
  redis.call('ZREM', DEDUPS, did)
  local nk = BASE .. ':dedup-next:' .. did
  if not finished then
    redis.call('DEL', nk)
    return
  end
  local nx = redis.call('HMGET', nk, 'n', 'd', 'o', 'p', 'dl', 'g')
  if not nx[1] then return end
  redis.call('DEL', nk)
  local nid
  for _ = 1, 10 do  -- (an automatic id handed out twice, as in add.lua: the next one)
    nid = int_str(redis.call('INCR', K.idc))
    if redis.call('EXISTS', JP .. nid) == 0 then break end
  end
  local now = now_ms()
  local fields = {'n', nx[1], 'd', nx[2], 'ts', int_str(now), 'dd', did}
  if nx[3] ~= '' then fields[#fields + 1] = 'o'; fields[#fields + 1] = nx[3] end
  local prio, delay = tonumber(nx[4]) or 0, tonumber(nx[5]) or 0
  if prio ~= 0 then fields[#fields + 1] = 'p'; fields[#fields + 1] = nx[4] end
  if nx[6] ~= '' then
    fields[#fields + 1] = 'g'; fields[#fields + 1] = nx[6]
    fields.group = nx[6]
  end
  redis.call('SET', dk, nid)
  redis.call('ZADD', DEDUPS, '+inf', did)
  emit('ev', 'added', 'id', nid, 'name', nx[1])
  if delay > 0 then
    enqueue_delayed(JP .. nid, nid, now + delay, fields, prio)
    wake()
    emit('ev', 'delayed', 'id', nid, 'delay', nx[5])
  else
    enqueue_ready(JP .. nid, nid, prio, fields)
    emit('ev', 'waiting', 'id', nid)
  end
end

-- Meta 'xr' is set once a job of the queue has a dedup id, a parent or children: then a
-- deleted job (removed, drained, cleaned, trimmed) frees its dedup id and updates its
-- flow (includes/flows.lua); other queues pay one HEXISTS per script call for this.
local extra_live = nil
local flow_on_delete  -- includes/flows.lua
local function extra_in_use()
  if extra_live == nil then
    if meta_cache then extra_live = meta_cache.xr ~= false
    else extra_live = redis.call('HEXISTS', K.meta, 'xr') == 1 end
  end
  return extra_live
end
local function delete_job_keys(id)
  if extra_in_use() then
    local f = redis.call('HMGET', JP .. id, 'dd', 'par', 'pol', 'pend', 'st')
    if f[1] then release_dedup(f[1], id) end
    if f[2] or f[4] then
      -- (An active job is deleted as it finishes: its retention keeps nothing.)
      flow_on_delete(JP .. id, f[2], f[3], f[4],
                     f[5] == 'completed' or f[5] == 'failed' or f[5] == 'active')
    end
  end
  redis.call('DEL', JP .. id, LP .. id, BASE .. ':kids:' .. id)
end

-- The removal of a held job whose worker has not handed it back (stuck, or gone and its
-- lease not yet out) completes once the hold it was removed under has run out: its keys
-- go, so that its id can name a new job. The worker's late hand-back finds another token.
-- Returns true if job `id` was such a job.
local function free_removed(jk, id, now)
  local st, rmu, g, tok = unpack(redis.call('HMGET', jk, 'st', 'rmu', 'g', 'tok'))
  if st ~= 'removed' or now < (tonumber(rmu) or 0) then return false end
  -- An older version's removal left the held version as it was: its holder's completion,
  -- written without a read (finish.lua, trusted completions), must not land on a job
  -- added again under this id.
  held_changed()
  redis.call('ZREM', K.held_removed, id)
  if g and tok and tok ~= '' then
    group_holds_count({[token_bucket(tok)] = -1})
  end
  delete_job_keys(id)
  return true
end

-- delete_job_keys for many jobs: in a queue without dedup ids or flows, one DEL for all
-- of them (retention trims a job per finished job: a DEL each was a redis.call per job).
-- Such a queue has no children lists (a parent sets 'xr'), and logs only once a job of it
-- has logged (meta 'xl', log.lua): each key named costs the DEL a lookup, ~1.3k
-- instructions a job for the two that are not there.
local function delete_jobs_keys(ids)
  if extra_in_use() then
    for _, id in ipairs(ids) do delete_job_keys(id) end
    return
  end
  local keys, n = {}, 0
  if meta_marks().xl then
    for _, id in ipairs(ids) do
      keys[n + 1] = JP .. id; keys[n + 2] = LP .. id
      n = n + 2
    end
  else
    for _, id in ipairs(ids) do
      n = n + 1
      keys[n] = JP .. id
    end
  end
  for i = 1, n, 3999 do redis.call('DEL', unpack(keys, i, math.min(i + 3998, n))) end
end

-- Deletes up to `count` jobs from the head of a sorted set; returns how many.
local function delete_set_members(set_key, count)
  local ids = redis.call('ZRANGE', set_key, 0, count - 1)
  if #ids == 0 then return 0 end
  delete_jobs_keys(ids)
  redis.call('ZREM', set_key, unpack(ids))
  return #ids
end

-- Deletes up to `count` waiting jobs from the head of the ready stream; returns how many.
local function delete_ready_entries(count)
  local entries = redis.call('XRANGE', K.ready, '-', '+', 'COUNT', count)
  local sids = {}
  for i, e in ipairs(entries) do
    sids[i] = e[1]
    delete_job_keys(e[2][2])
  end
  if #sids > 0 then redis.call('XDEL', K.ready, unpack(sids)) end
  return #sids
end

-- Per-minute counters for the throughput chart, one small hash per minute that expires on
-- its own (so the history is bounded without any cleanup), plus running totals.
local METRICS_KEEP_S = 7200
local function count_metrics(now, field, n)
  if n <= 0 then return end
  local mk = BASE .. ':metrics:' .. int_str(math.floor(now / 60000))
  -- The first count of a field in the minute (the hash may be new) sets the expiry; the
  -- later ones need not (a redis.call each).
  if redis.call('HINCRBY', mk, field, n) == n then redis.call('EXPIRE', mk, METRICS_KEEP_S) end
  redis.call('HINCRBY', BASE .. ':metrics:totals', field, n)
end

--@include flows
