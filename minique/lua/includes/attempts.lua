-- Per-attempt history for the job page (minique/attempts.py reads it). An attempt that ends
-- in failure, a retry or a stall leaves one entry in a ring of ATTEMPT_RING fields of the
-- job's own hash ('h0'..'h9', indexed by the attempt-start counter), so the history costs
-- no extra key, is deleted with the job, and is bounded at ATTEMPT_RING entries of at most
-- ~600 bytes. Completed attempts write nothing: the hash's own pon/fon/w tell the last one.
-- Cost per non-completed attempt: one HMGET here; the caller adds the field to its HSET.
-- (The constants live in a block of their own: a transition run as one EVAL chunk with
-- every include may declare at most 200 locals at its top level.)
local attempt_entry
do
  local ATTEMPT_RING = 10
  local ATTEMPT_REASON_MAX = 500

  -- Returns the field name and the entry: "ats|outcome|start ms|end ms|#worker|worker reason".
  -- The worker's length comes first, so worker and reason may hold any byte, '|' included.
  -- `start` ({'pon', ms, 'ats', n}, or nil) is the start of a held job that started and
  -- ended between two calls of its worker, written with its end (finish.lua): the hash
  -- still has the previous attempt's.
  function attempt_entry(jk, outcome, now, reason, start)
    local f = redis.call('HMGET', jk, 'ats', 'pon', 'w')
    if start then f[1], f[2] = start[4], start[2] end
    local ats = tonumber(f[1]) or 0
    local w = f[3] or ''
    return 'h' .. (ats % ATTEMPT_RING),
           table.concat({int_str(ats), outcome, f[2] or '', int_str(now), int_str(#w), ''}, '|') ..
           w .. string.sub(reason, 1, ATTEMPT_REASON_MAX)
  end
end
