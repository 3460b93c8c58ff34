-- Finishes a batch of a worker's jobs (complete, fail, retry, back to waiting, started,
-- handed back) and, in the same call, fetches its next jobs. Each result is fenced by the
-- job's token: a worker whose lease expired cannot finish a job that is no longer its own.
-- ARGV: JP, count, lease_ms, worker, limiter_max, limiter_window_ms, promote_limit, hold,
--       hold_ms, call id, nres, policies ("count:age_ms,..." retention policies, referred
--       to by index), "<held version>:<earliest take ms>" of its C results ('' = none; see
--       "Trusted completions" below), then per result "token:made:started|kind|delay_ms|policy
--       index|started_ms|id" and the value, plus the stack trace for kinds f, r, d and w.
--       (Few arguments per job: packing them is the client's hot spot. The id, which may
--       contain '|', comes last: matched from the left, the pattern never backtracks,
--       where "id|..." matched from the right cost ~10k instructions a job.)
--   made:started: the job's attempt counts as its take replied them (attempts made, and
--   attempts started once it has started); ":made:started" may be left out, and the
--   counts are then read from the job.
--   kind: c = completed (value = return value), C = the same for a held job that its
--         worker neither started nor handed back in an earlier call (see below), T = as
--         C for a job with a group (the group in the place of the stack trace),
--         f = failed (value = reason),
--         r = retry after delay_ms (value = reason), w = back to waiting without using an
--         attempt; delay_ms > 0 then also stops the queue taking jobs for that long,
--         d = delayed by delay_ms without using an attempt (value = reason),
--         s = a held job started at started_ms (it becomes active), S = the same for a
--         suspect job (includes/take.lua), whose worker waits for the answer before it
--         runs it: a removal that came first wins, as for h, h = a job handed back
--         before it started (it returns to the place it was taken from),
--         g = back to the front of its group without using an attempt, and the group
--         takes no jobs for delay_ms (GroupRateLimited); for a job without a group, as d.
--   started_ms is set for jobs the worker took as held; it counts only while Redis still
--   has the job held (the 's' note may have gone in an earlier call).
-- Returns take_jobs' reply and then a status per result, the last nres items (1 applied,
-- 0 the job is another owner's now, 2 the job is gone: removed, drained or deleted). The
-- statuses come last so that the few of them are appended to the take's table: the take's
-- 13 fields a job copied after them had cost ~4.4k instructions a job (~3 %).
-- (minique/worker.py split_finish_reply reads it.)
--
-- The call id makes a re-sent call (a client retry after a timeout, when the first send
-- may have run) change nothing twice: the worker's last call is recorded with the ids it
-- took, and the same id again gets the first answer back, rebuilt from the jobs.
--
-- Trusted completions. A C result is written without reading the job first (its token
-- and state: the read and its reply were ~8k Redis instructions a job at concurrency 50,
-- where nearly every job is held, starts and ends between two calls). Its job is still
-- held with the token its take wrote (or was removed while held, by which its
-- completion stands all the same) when all of these hold:
--   - its worker sent no start note or hand-back for it (the worker marks only those C);
--   - its lease from its take still runs: the call names the earliest take of its C jobs
--     (the Redis ms its reply gave), and no take-back of a dead holder's jobs, by a
--     worker of any version, can have reached a job whose lease has not run out;
--   - no other change to a held job since its take: those that put one back (a job
--     unlinked while held) move meta 'hv' on (includes/base.lua held_changed), as do
--     removals and take-backs, and the call names the held version its take's reply gave
--     (a re-sent call's answer gives none);
--   - the take is in the data's history: the call that made it is in the worker's
--     unbroken line of recorded calls (each found the record of the one before; see
--     'chain' below). After a restore from an older snapshot, an AOF that lost its last
--     second, a restart without persistence or an obliterate, a take of the lost time is
--     read: the same held version and lease can then stand for another take;
--   - the queue has no dedup ids or flows (the read's other fields; the group comes with
--     a T result), and the job's retention keeps it (one removed at once is never written).
-- ARGV[13] is then "<held version>:<earliest take ms>:<earliest take's call id>"; a C
-- result that misses any of these is a plain c. The write's count of new fields tells a
-- hash deleted behind the queue's back (all 7 new: a held job's hash has 'st' and 'tok'),
-- which is undone.
--@include base
--@include retention
--@include take
--@include attempts
local now = now_ms()
local now_s = int_str(now)
local lease_ms = tonumber(ARGV[3])
local worker = ARGV[4]
local call_id = ARGV[10]
local nres = tonumber(ARGV[11])
-- Workers' last calls live in one hash, a field per worker; the worker deletes its own
-- when it stops, and the sweep drops those of workers gone (sweep.lua).
local calls_key = BASE .. ':calls'

-- The first call of this worker's unbroken line of recorded calls: each call finds the
-- record of the one before it (a call that does not, after a restore from an older
-- snapshot, a restart without persistence or an obliterate, starts a new line). Every call
-- of the line ran on the data of the one before, so a take in the line is in this data's
-- history, and one before it may not be (trusted completions, below). Only a worker's
-- counting ids ("1", "2"...) make a line; a call with any other id starts none ('').
local seq = string.match(call_id, '^%d+$') and tonumber(call_id)
local chain = seq and call_id or ''
do
local record = redis.call('HGET', calls_key, worker)
-- The record starts with "<call id>/<first call of its line>" (a 5-item array, 0x95, then
-- a string): a call that is no re-send, the usual case, is told apart without unpacking
-- the previous call's ids. (Readers of other workers' records read item 5.)
local rec_id, rec_chain
if record and string.byte(record, 1) == 0x95 then
  local b1, b2, b3 = string.byte(record, 2, 4)
  local from, len = 3, (b1 or 0) - 0xa0  -- fixstr; str8 and str16 for long ids
  if b1 == 0xd9 then from, len = 4, b2 elseif b1 == 0xda then from, len = 5, b2 * 256 + b3 end
  if len and len > 0 and (len < 32 or b1 == 0xd9 or b1 == 0xda) then
    rec_id, rec_chain = string.match(string.sub(record, from, from + len - 1), '^(.*)/(%d*)$')
  end
end
if seq and rec_chain ~= '' and rec_id == int_str(seq - 1) then chain = rec_chain end
if rec_id == call_id then
  local r = cmsgpack.unpack(record)
  do  -- (the block the record's locals end with)
    -- A re-send: the first answer, with the jobs it handed out that are still this call's.
    -- Its header says what holds now: the queue's limit and control version (a worker
    -- that held jobs under an older version hands them back), no hold granted.
    local out, header = {}, 1
    local m = meta_marks()
    local limit = tonumber(m.gconc) or (m.glim and -1) or 0
    -- (The active jobs' start time: the first call's, which took them. No held version:
    -- no completion of these jobs is trusted, as their state is not known to be the take's.)
    for _, v in ipairs({0, 0, -1, '0-0', now, limit, m.cv or '0', 0, tonumber(r[5]) or now,
                        ''}) do
      out[#out + 1] = v
    end
    local active_n = 0
    for part = 3, 4 do
      local list = r[part]
      for i = 1, #list, 2 do
        local id, tok = list[i], list[i + 1]
        local f = redis.call('HMGET', JP .. id, 'tok', 'n', 'd', 'o', 'atm', 'ats', 'ts', 'p',
                             'stc', 'g', 'hrc')
        if f[1] == tok then
          if part == 3 then active_n = active_n + 1 end
          local ats = tonumber(f[6]) or 0
          if part == 4 then ats = ats + 1 end
          local n = #out
          out[n + 1] = id; out[n + 2] = tok; out[n + 3] = f[2]; out[n + 4] = f[3]
          out[n + 5] = f[4] or ''; out[n + 6] = f[5] or '0'; out[n + 7] = ats
          out[n + 8] = f[7] or '0'; out[n + 9] = f[8] or '0'
          out[n + 10] = f[11] and ((f[9] or '0') .. '!') or (f[9] or '0')
          out[n + 11] = f[10] or ''
        end
      end
    end
    out[header + 1] = active_n
    local statuses, n = r[2], #out
    for j = 1, #statuses do out[n + j] = statuses[j] end
    return out
  end
end
end

local statuses = {}
local counts = {completed = 0, failed = 0, retried = 0}
-- Set updates are gathered and sent once per call (see call_batched).
local left_active, left_held, left_removed = {}, {}, {}
local starts = {}
-- Groups whose jobs left active: their slots come back once the results are written.
local released = {}
local held_grouped_done = nil  -- bucket -> -holds ended here (includes/groups.lua: gheldn)
local done_c, done_f = retention_batch(K.completed), retention_batch(K.failed)

-- Fields absent from a hash cost a scan of all of it each, so the finish reads a job's
-- group only in a queue that has had grouped jobs (meta 'gwn' exists from the first one
-- on, and is never deleted but with the queue), and its dedup id and flow links only in
-- one that has had such jobs (meta 'xr', as delete_job_keys).
local marks = meta_marks()
-- A result's fields (cur_* below): 1 token, 2 state, 3 group, 4 dedup id, 5 parent,
-- 6 parent policy. The attempt counts come with the result (after its token), the place
-- it goes back to ('ps') is read only where a hand-back needs it.
local FIELDS = {'tok', 'st', 'g', 'dd', 'par', 'pol'}
-- (Written out, not named: a local each counts against the 200 of EVAL mode's chunk.)
local n_fields = (marks.xr ~= false) and 6 or (marks.gwn ~= false) and 3 or 2

-- Keyed by the index as the results send it (a string), so no result converts it.
local policies = {}
do
  local np = 0
  for kc, ka in string.gmatch(ARGV[12], '(-?%d+):(-?%d+)') do
    policies[int_str(np)] = {tonumber(kc), tonumber(ka)}
    np = np + 1
  end
end
-- Trusted completions (see the top): the held version they were handed out at, if the
-- call may trust any (it is checked again per result: one before may have changed it).
local trust_hv = ''
do
  local hv, taken, took = string.match(ARGV[13] or '', '^(%d+):(%d+):(%d+)$')
  if hv and n_fields <= 3 and hv == (marks.hv or '0') and now < tonumber(taken) + lease_ms
      and chain ~= '' and tonumber(took) >= tonumber(chain) then
    trust_hv = hv
  end
end
local b = 14
-- Locals for what the loop calls per job: a global is a table lookup on each use.
local rcall, smatch = redis.call, string.match
for i = 1, nres do
  local tok, tok_atm, tok_ats, kind, delay_s, pi, started, id =
    smatch(ARGV[b], '^([^|:]*):?(%d*):?(%d*)|(%a)|(%d+)|(%d+)|(%d*)|(.*)$')
  local value, stack = ARGV[b + 1], ''
  local trusted = kind == 'C' or kind == 'T'
  if kind == 'c' or kind == 's' or kind == 'h' or kind == 'S' or kind == 'C' then
    b = b + 2
  else
    stack = ARGV[b + 2]; b = b + 3  -- (for T: the job's group)
  end
  if trusted then kind = 'c' end
  local policy = policies[pi]
  local jk = JP .. id
  trusted = trusted and trust_hv ~= '' and trust_hv == (marks.hv or '0') and started ~= ''
            and tok_ats ~= '' and policy ~= nil and policy[1] ~= 0 and policy[2] ~= 0
  -- Every way out of active (and held) clears the token, so a matching token means the
  -- job is still this worker's, and its attempt counts are still those its take replied
  -- (only a way out, or this worker's own results, changes them): the worker sends them
  -- back after the token (made, then started as the job stands once it starts), and the
  -- hash is not read for them (~3k instructions a field).
  local cur_tok, cur_st, cur_g, cur_dd, cur_par, cur_pol
  -- A trusted completion's write stands for the read (the 'c' branch below skips its own).
  if trusted then
    if stack ~= '' then cur_g = stack end  -- (T: the group its take replied; a job's is fixed)
    if rcall('HSET', jk, 'pon', started, 'ats', tok_ats, 'st', 'completed', 'rv', value,
             'fon', now_s, 'tok', '', 'atm', int_str(count_num(tok_atm, 0) + 1)) == 7 then
      rcall('DEL', jk)  -- every field was new: the hash had been deleted (see the top)
      trusted = false
    else
      -- Held, or removed while held by a process older than the held version (whose
      -- removals do not move it on): a started job's completion stands either way, and
      -- it leaves whichever of the two sets has it.
      cur_tok, cur_st = tok, 'held'
      left_removed[#left_removed + 1] = id
    end
  elseif n_fields == 2 then  -- (the usual queue: no unpack of FIELDS per result)
    cur_tok, cur_st = unpack(rcall('HMGET', jk, 'tok', 'st'))
  else
    cur_tok, cur_st, cur_g, cur_dd, cur_par, cur_pol =
      unpack(rcall('HMGET', jk, unpack(FIELDS, 1, n_fields)))
  end
  local cur_atm, cur_ats = tok_atm, tok_ats
  if tok_ats == '' and cur_tok == tok then
    -- A result without them (a hand-made call): from the hash.
    cur_atm, cur_ats = unpack(rcall('HMGET', jk, 'atm', 'ats'))
    cur_ats = int_str(count_num(cur_ats, 0)
                      + ((cur_st == 'held' or cur_st == 'removed') and 1 or 0))
  end
  -- Held: taken ahead, not started as far as Redis knows; 'removed' is a held job that
  -- remove() or drain() reached before its worker handed it back.
  local held = cur_st == 'held' or cur_st == 'removed'
  local left = (cur_st == 'held' and left_held) or (cur_st == 'removed' and left_removed)
               or left_active
  -- A held grouped job's hold ends with any result of its worker's (includes/groups.lua).
  if held and cur_g and cur_tok == tok then
    held_grouped_done = held_grouped_done or {}
    local bucket = token_bucket(tok)
    held_grouped_done[bucket] = (held_grouped_done[bucket] or 0) - 1
  end
  -- A cancel asked while the job was this worker's (cancel.lua: 'cx') reaches it however
  -- its attempt went out: one going back (a retry, a hand-back, Delayed, WaitingChildren,
  -- a rate limit, a shutdown) fails as cancelled instead of running again. (The worker's message about
  -- the cancel may have crossed the outcome it had already decided.)
  -- A held job handed back never started: it was waiting to everyone else, which a cancel
  -- does not reach (cancel.lua waits for this answer); it goes back without the flag.
  -- ('2': cancel() gave up waiting for the holder and answered True: the cancel holds.)
  if kind ~= 'c' and cur_tok == tok and (kind == 'r' or kind == 'w' or kind == 'h'
      or kind == 'd' or kind == 'g' or kind == 'k') and cur_st ~= 'removed' then
    local cx = rcall('HGET', jk, 'cx')
    if cx and kind == 'h' and cur_st == 'held' and cx ~= '2' then
      rcall('HDEL', jk, 'cx')
    elseif cx then
      kind, value, stack = 'f', 'cancelled', ''
    end
  end
  if cur_tok ~= tok then
    statuses[i] = cur_st and 0 or 2
  elseif cur_st == 'removed' and (kind == 'h' or kind == 'S') then
    -- Handed back never started (or a suspect job not yet started): the removal completes now.
    statuses[i] = 2
    left[#left + 1] = id
    delete_job_keys(id)
  elseif kind == 'h' then
    statuses[i] = 1
    -- Handed back unstarted: an add kept provisionally while it was held duplicated a
    -- waiting job (includes/dedup.lua), and goes.
    if cur_dd and rcall('HGET', BASE .. ':dedup-next:' .. cur_dd, 'ht') == tok then
      rcall('DEL', BASE .. ':dedup-next:' .. cur_dd)
    end
    if held then
      left_held[#left_held + 1] = id
    else
      -- Taken for a free slot but never started: the start it was counted for is undone.
      left_active[#left_active + 1] = id
      if cur_g then released[#released + 1] = cur_g end
      local ats_left = math.max(0, count_num(cur_ats, 1) - 1)  -- (the result's: as started)
      redis.call('HSET', jk, 'ats', int_str(ats_left))
      -- Never started at all: no start time either (a waiting job's processed_on would
      -- read as a start that did not happen). A later attempt's take wrote over the one
      -- before, which stays as the take left it.
      if ats_left == 0 then redis.call('HDEL', jk, 'pon') end
      emit('ev', 'waiting', 'id', id)
    end
    enqueue_return(jk, id, rcall('HGET', jk, 'ps'), tok)
  elseif kind == 's' or kind == 'S' then
    -- A held job started before its worker heard of any removal: it runs on.
    statuses[i] = 1
    if held then
      left[#left + 1] = id
      starts[#starts + 1] = lease_score(now + lease_ms, i)
      starts[#starts + 1] = id
      redis.call('HSET', jk, 'st', 'active', 'pon', started ~= '' and started or now_s,
                 'ats', cur_ats)
      if cur_g then group_start(cur_g) end
      emit_batched('active', id)
    end
  else
    statuses[i] = 1
    -- A held job that started and ended between two calls: its start is written with its
    -- end. start_fields is true for such a job, and made the table of its fields below for a
    -- kind other than 'c' (one local, not two: EVAL mode compiles this file and its
    -- includes as one chunk, at Lua's limit of 200 locals).
    local start_fields = nil
    if held then
      left[#left + 1] = id
      -- Without a start time it never started (e.g. cancelled while held): no start.
      if started ~= '' then
        start_fields = true
        -- (A completion's 'active' goes with its 'completed': emit_batched's started_here.)
        if kind ~= 'c' then emit_batched('active', id) end
      end
    else
      left_active[#left_active + 1] = id
    end
    -- A held job that started and ended between two calls never took a slot.
    if cur_g and not held then released[#released + 1] = cur_g end
    local delay = delay_s == '0' and 0 or tonumber(delay_s)
    if kind == 'g' and not cur_g then kind = 'd' end
    if kind == 'k' then
      -- WaitingChildren: a child that failed it while it ran (flows.lua 'cff') fails it now.
      local cff = rcall('HGET', jk, 'cff')
      if cff then
        kind, value = 'f', cff
        rcall('HDEL', jk, 'cff')  -- (told once: a retry_job of the parent starts afresh)
      end
    end
    if cur_dd and (kind == 'c' or kind == 'f') then release_dedup(cur_dd, id, true) end
    if cur_par and (kind == 'c' or kind == 'f') then flow_finished(jk, cur_par, cur_pol, kind, value) end
    -- The start's fields go with the outcome's in one HSET: written out for a completion
    -- (the usual case: 12.5k instructions a job less than write_job's tables at concurrency
    -- 50, benchmarks.callgrind_jobs), through a table otherwise.
    if start_fields and kind ~= 'c' then start_fields = {'pon', started, 'ats', cur_ats} end
    if kind == 'c' then
      -- The event carries the return value, so a waiter has it even once retention has
      -- removed the job; a large one only if no job is left to read it from.
      if retain(done_c, id, now_s, policy[1], policy[2]) then
        if trusted then  -- (written above)
        elseif start_fields then
          rcall('HSET', jk, 'pon', started, 'ats', cur_ats, 'st', 'completed', 'rv', value,
                'fon', now_s, 'tok', '', 'atm', int_str(count_num(cur_atm, 0) + 1))
        else
          rcall('HSET', jk, 'st', 'completed', 'rv', value, 'fon', now_s, 'tok', '',
                'atm', int_str(count_num(cur_atm, 0) + 1))
        end
        emit_batched('completed', id, #value <= EVENT_VALUE_MAX and value or nil, start_fields)
      else
        delete_job_keys(id)
        emit_batched('completed', id, value, start_fields)
      end
      counts.completed = counts.completed + 1
    elseif kind == 'f' then
      if retain(done_f, id, now_s, policy[1], policy[2]) then
        local hf, hv = attempt_entry(jk, 'failed', now, value, start_fields)
        write_job(jk, start_fields, 'st', 'failed', 'fr', value, 'stk', stack, 'fon', now_s,
                  'tok', '', 'atm', int_str(count_num(cur_atm, 0) + 1), hf, hv)
      else
        delete_job_keys(id)
      end
      emit('ev', 'failed', 'id', id, 'reason', string.sub(value, 1, EVENT_VALUE_MAX))
      counts.failed = counts.failed + 1
    elseif kind == 'r' then
      -- (A delay is due 1 ms late rather than up to 1 ms early: now_ms cuts Redis's clock
      -- to the ms.)
      local atm = count_num(cur_atm, 0) + 1
      local hf, hv = attempt_entry(jk, 'retried', now, value, start_fields)
      write_job(jk, start_fields, 'fr', value, 'stk', stack, 'tok', '', 'atm', int_str(atm), hf, hv)
      counts.retried = counts.retried + 1
      emit('ev', 'retrying', 'id', id, 'attempt', atm, 'delay', delay,
           'reason', string.sub(value, 1, 200))
      if delay > 0 then
        enqueue_delayed(jk, id, now + delay + 1)
        emit('ev', 'delayed', 'id', id, 'delay', delay)
      else
        enqueue_ready(jk, id, job_priority(jk))
        emit('ev', 'waiting', 'id', id)
      end
    elseif kind == 'g' then
      write_job(jk, start_fields, 'tok', '')
      group_throttle(cur_g, now + delay)
      -- Jobs of the group that workers hold must not start now: they hand them back.
      control_changed('group')
      enqueue_front(jk, id)
      emit('ev', 'waiting', 'id', id, 'reason', string.sub(value, 1, 200))
    elseif kind == 'k' then
      -- WaitingChildren (BullMQ's moveToWaitingChildren): no attempt used; it waits for the
      -- children its run added (flows.lua releases it), or runs again at once if they are
      -- done already.
      if (tonumber(rcall('HGET', jk, 'pend')) or 0) > 0 then
        write_job(jk, start_fields, 'tok', '', 'st', 'waiting-children', 'fdl', '0')
        redis.call('ZADD', waiting_children_set(), now_s, id)
        emit('ev', 'waiting-children', 'id', id)
      else
        write_job(jk, start_fields, 'tok', '')
        enqueue_front(jk, id)
        emit('ev', 'waiting', 'id', id, 'reason', string.sub(value, 1, 200))
      end
    elseif kind == 'd' then
      -- The processor asked to run again later (Delayed): no attempt used, and unlike a
      -- rate limit the queue goes on taking other jobs.
      write_job(jk, start_fields, 'tok', '')
      if delay > 0 then
        enqueue_delayed(jk, id, now + delay + 1)
        emit('ev', 'delayed', 'id', id, 'delay', delay_s, 'reason', string.sub(value, 1, 200))
      else
        enqueue_front(jk, id)
        emit('ev', 'waiting', 'id', id, 'reason', string.sub(value, 1, 200))
      end
    else
      write_job(jk, start_fields, 'tok', '')
      enqueue_front(jk, id)
      emit('ev', 'waiting', 'id', id, 'reason', value)
      if delay > 0 and redis.call('PTTL', K.pause_until) < delay then
        redis.call('SET', K.pause_until, '1', 'PX', delay)
        -- Other workers hand back what they hold: the queue takes nothing for a while.
        control_changed('limit')
      end
    end
  end
end

flush_events()
call_batched('ZREM', K.active, left_active)
call_batched('ZREM', K.held, left_held)
-- (Trusted completions are listed here too, in case an older version removed them: a
-- queue without removed held jobs, the usual case, skips their arguments.)
if #left_removed > 0 and redis.call('EXISTS', K.held_removed) == 1 then
  call_batched('ZREM', K.held_removed, left_removed)
end
call_batched('ZADD', K.active, starts)
if held_grouped_done then group_holds_count(held_grouped_done) end
for _, g in ipairs(released) do group_release(g) end
retention_flush(done_c, now, 100 + nres)
retention_flush(done_f, now, 100 + nres)
count_metrics(now, 'completed', counts.completed)
count_metrics(now, 'failed', counts.failed)
count_metrics(now, 'retried', counts.retried)

local taken = take_jobs(now, tonumber(ARGV[2]), lease_ms, worker, tonumber(ARGV[5]),
                        tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8]),
                        tonumber(ARGV[9]))
-- The record of this call: its statuses and the ids (with tokens) it handed out.
local active_ids, held_ids = {}, {}
if taken[1] == 0 then
  local active_n = taken[2]
  for j = HEADER_LEN + 1, #taken, JOB_FIELDS do
    local list = (j - HEADER_LEN - 1) / JOB_FIELDS < active_n and active_ids or held_ids
    list[#list + 1] = taken[j]
    list[#list + 1] = taken[j + 1]
  end
end
redis.call('HSET', calls_key, worker,
           cmsgpack.pack({call_id .. '/' .. chain, statuses, active_ids, held_ids, now}))
local nt = #taken
for j = 1, #statuses do taken[nt + j] = statuses[j] end
return taken
