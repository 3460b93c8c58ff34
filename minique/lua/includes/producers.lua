-- A producer's record (add.lua, add_flow.lua): which of its calls' sequence numbers ran,
-- so that a re-sent call changes nothing and a call that never ran still runs. One field
-- of the hash BASE .. ":producers" per producer: "top|ms", "top:g1,g2,...|ms", or with add_flow's reply for
-- its top, "top[:gaps]|reply|ms". top is the highest number that ran, the gaps the numbers
-- below it, at most 48 below, that have not run (a producer pipelines add_bulk's calls, at
-- most 32 unanswered: minique/queue.py ADD_PIPELINE_DEPTH, so a call Redis refused unrun,
-- or one overtaken, leaves a gap until it comes again). A number further below the top
-- counts as seen by add.lua (a call that doubtful is not run twice), and as unknown by
-- fence_add.lua. A record made by a call other than the producer's first has the 48
-- numbers below it as gaps. The sweep (sweep.lua) reads the last field as the record's time.
--
-- producer_turn(last record or false, this call's number as sent, producer, now) returns
--   nil, the stored reply (add_flow's, for the top; else nil), and add.lua's answer to a
--   re-send ({1, place in the call, id, duplicate (0/1), ..., now}: for the jobs whose outcome the
--   state no longer tells, their first run's: a fresh id given where the automatic one
--   was taken, a duplicate and the job it found; add.lua keeps them, msgpack, under
--   "<producer>:<number>"; a number fenced unrun by fence_add.lua has none) when the
--   number ran already;
--   else the record's head ("top[:gaps]") once this call has run, and, when this call is
--   not the new top (a gap that runs now), the top's stored reply to keep (or nil).
-- Bounded: at most 48 gaps are read or written.
local function producer_turn(last, seq_s, producer, now)
  if not last then
    -- No record: the producer's first call, or one after its record went (the sweep, an
    -- obliterate). Numbers below this one may still come (a first call refused while a
    -- later one ran, calls overtaken): they are gaps, not numbers that ran, or a refused
    -- call of them would be fenced as run (fence_add.lua) and its jobs told added.
    local seq = tonumber(seq_s)
    if seq == 1 then return seq_s end
    local open = {}
    for g = math.max(1, seq - 48), seq - 1 do open[#open + 1] = int_str(g) end
    return seq_s .. ':' .. table.concat(open, ',')
  end
  local top_s, gaps = string.match(last, '^(%d+):?([%d,]*)')
  local seq, top = tonumber(seq_s), tonumber(top_s)
  if seq == top + 1 and gaps == '' then return seq_s end  -- (the usual call)
  local reply = string.match(last, '^[%d:,]*|(.*)|%d+$')  -- add_flow's, if any
  if seq <= top then
    if gaps == '' or seq < top - 48
        or not string.find(',' .. gaps .. ',', ',' .. seq_s .. ',', 1, true) then
      -- (Written here, not as a function of its own: that would be a local more, and the
      -- EVAL fallback holds every include's locals in one chunk, at Lua's limit of 200.)
      local notes = redis.call('HGET', BASE .. ':producers', producer .. ':' .. seq_s)
      local answer = {1}
      if notes then
        for _, v in ipairs(cmsgpack.unpack(string.match(notes, '^(.*)|%d+$'))) do
          answer[#answer + 1] = v
        end
      end
      answer[#answer + 1] = now
      return nil, seq == top and reply or nil, answer
    end
    local open = string.match(string.gsub(',' .. gaps .. ',', ',' .. seq_s .. ',', ','),
                              '^,(.-),?$')
    return open == '' and top_s or top_s .. ':' .. open, reply
  end
  local open = {}
  for g in string.gmatch(gaps, '%d+') do
    if tonumber(g) >= seq - 48 then open[#open + 1] = g end
  end
  for g = math.max(top + 1, seq - 48), seq - 1 do open[#open + 1] = int_str(g) end
  return open[1] and seq_s .. ':' .. table.concat(open, ',') or seq_s
end

