-- The body of a transition with a "--@once" line runs in place of the --@body line below.
-- Such a transition changes state, and redis-py may send it again after a timeout (when
-- the first send may have run): it takes a call id as its last argument
-- (minique/scripts.py), the first run keeps its reply, and a re-send gets that reply back
-- instead of running again. A job removed by the first send is reported removed, an event
-- is emitted once. Replies are kept 120 s, longer than redis-py's retries of one call last
-- (four attempts of at most 15 s, minique/connection.py), in two keys of the queue that
-- obliterate deletes: a hash of replies and a sorted set of when each was kept. Each call
-- forgets at most 10 of the expired ones (bounded work per call). Everything here is in a
-- function: an EVAL script holds every include's locals in one, with no room for more.
return (function(call_id)
  begin_call(KEYS, ARGV)
  local replies, kept_at = BASE .. ':once', BASE .. ':once:at'
  local kept = redis.call('HGET', replies, call_id)
  if kept then return unpack(cmsgpack.unpack(kept)) end
  local reply = {(function()
--@body
  end)()}
  local now = now_ms()
  local old = redis.call('ZRANGEBYSCORE', kept_at, '-inf', now - 120000, 'LIMIT', 0, 10)
  if #old > 0 then
    redis.call('HDEL', replies, unpack(old))
    redis.call('ZREM', kept_at, unpack(old))
  end
  redis.call('HSET', replies, call_id, cmsgpack.pack(reply))
  redis.call('ZADD', kept_at, now, call_id)
  return unpack(reply)
end)(table.remove(ARGV))
