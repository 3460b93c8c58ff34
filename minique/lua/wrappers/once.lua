-- The body of a transition with a "--@once" line runs in place of the --@body line below.
-- Such a transition changes state, and redis-py may send it again after a timeout (when
-- the first send may have run): it takes a call id as its last argument
-- (minique/scripts.py), the first run keeps its reply, and a re-send gets that reply back
-- instead of running again. A job removed by the first send is reported removed, an event
-- is emitted once, and a control set by someone else meanwhile is not set back.
-- Replies go into a hash per minute of the queue ('<base>:once:<minute>'), which expires
-- three minutes after its last write: a re-send comes within about a minute (four
-- attempts of at most 15 s, minique/connection.py), and the last three minutes' hashes
-- are looked in. Nothing stays once calls stop, and no call forgets anything itself.
-- Everything here is in a function: an EVAL script holds every include's locals in one,
-- with no room for more.
return (function(call_id)
  begin_call(KEYS, ARGV)
  local minute = math.floor(now_ms() / 60000)
  for m = minute, minute - 2, -1 do
    local kept = redis.call('HGET', BASE .. ':once:' .. m, call_id)
    if kept then return unpack(cmsgpack.unpack(kept)) end
  end
  local reply = {(function()
--@body
  end)()}
  local replies = BASE .. ':once:' .. minute
  redis.call('HSET', replies, call_id, cmsgpack.pack(reply))
  redis.call('PEXPIRE', replies, 180000)
  return unpack(reply)
end)(table.remove(ARGV))
