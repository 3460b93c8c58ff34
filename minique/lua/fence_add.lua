-- Settles an add (add.lua) or add_flow call of a producer that Redis refused (out of
-- memory, read-only after a failover, its code missing) when an earlier send of the same
-- call may have been lost on the way (a retry by redis-py or by the producer's own link
-- after a timeout or a dropped connection): says whether the call ran, and if it had not,
-- makes sure it never will. A refusal says nothing of an earlier send: the first send may
-- have run and only its reply been lost (a re-send refused for memory then reported jobs
-- that were in Redis as not added, and adding them again added them twice), or it may
-- still arrive late over the old connection. Once fenced, the number counts as run, and
-- such a late copy is answered as a re-send and adds nothing.
-- ARGV: JP (unused), producer, seq (the call's number), kind ('add' or 'flow'); the call
-- id last (--@once: a re-sent fence gets the first one's reply, not "it ran").
-- Returns nil when the call had not run (now it never will); an error (FENCEUNKNOWN) when
-- the number is too far below the record's top to tell; when it had run, the answer to
-- a re-send: add.lua's {1, sent id, fresh id, ..., now} for 'add', add_flow's reply for
-- 'flow' (kept for the producer's last call, which a refused call one at a time is).
-- Runs while Redis is out of memory: it writes one field of a record that exists (or a
-- short new one), and refusing it leaves the outcome unknown. Bounded: producer_turn.
--@include base
--@include producers
--@once
--@allow-oom
local producer, seq_s = ARGV[2], ARGV[3]
local last = redis.call('HGET', BASE .. ':producers', producer)
-- Below the numbers the record knows exactly (48 below its top), "ran" would be a guess:
-- the producer fences a refused call before its later calls run that far ahead
-- (minique/queue.py), so this is only reached when something else went wrong.
local top_s = last and string.match(last, '^%d+')
if top_s and tonumber(seq_s) < tonumber(top_s) - 48 then
  return redis.error_reply('FENCEUNKNOWN call ' .. seq_s .. ' of producer ' .. producer
                           .. ' is too far below its last (' .. top_s .. ') to tell whether it ran')
end
local head, kept, resent = producer_turn(last, seq_s, producer, now_ms())
if head then
  redis.call('HSET', BASE .. ':producers', producer,
             (kept and head .. '|' .. kept or head) .. '|' .. int_str(now_ms()))
  return nil
end
if ARGV[4] == 'flow' then
  if kept then return cmsgpack.unpack(kept) end
  return redis.error_reply('INVALIDSTATE the add_flow call ran, and its reply is gone '
                           .. '(a later call of the producer replaced it)')
end
return resent
