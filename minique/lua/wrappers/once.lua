-- The body of a transition with a "--@once" line runs in place of the --@body line below.
-- Such a transition changes state, and redis-py may send it again after a timeout (when
-- the first send may have run): it takes a call id as its last argument
-- (minique/scripts.py), the first run keeps its reply, and a re-send gets that reply back
-- instead of running again. A job removed by the first send is reported removed, an event
-- is emitted once, and a control set by someone else meanwhile is not set back.
-- Replies go into a hash per 10 s of the queue ('<base>:once:<period>'), which expires
-- 100 s after its last write; the last 9 periods' hashes are looked in. A re-send comes
-- within about a minute of its first send (four attempts of at most 15 s,
-- minique/connection.py). Nothing stays once calls stop, and a hash that expires holds at
-- most 10 s of calls: Redis frees an expired hash at once, in time that grows with it.
-- (Job logs and progress, which a job may send at a high rate, keep their own record of
-- recent calls in the job: log.lua, progress.lua.)
-- Everything here is in a function: an EVAL script holds every include's locals in one,
-- with no room for more.
return (function(call_id)
  begin_call(KEYS, ARGV)
  local period = math.floor(now_ms() / 10000)
  for p = period, period - 8, -1 do
    local kept = redis.call('HGET', BASE .. ':once:' .. p, call_id)
    if kept then return unpack(cmsgpack.unpack(kept)) end
  end
  local reply = {(function()
--@body
  end)()}
  local replies = BASE .. ':once:' .. period
  redis.call('HSET', replies, call_id, cmsgpack.pack(reply))
  redis.call('PEXPIRE', replies, 100000)
  return unpack(reply)
end)(table.remove(ARGV))
