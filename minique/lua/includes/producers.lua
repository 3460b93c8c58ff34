-- A producer's record (add.lua, add_flow.lua): which of its calls' sequence numbers ran,
-- so that a re-sent call changes nothing and a call that never ran still runs. One field
-- of the hash BASE .. ":producers" per producer: "top[:g1,g2,...][;n1,n2,...][|reply]|ms".
-- top is the highest number that ran, the gaps the numbers below it, at most 48 below,
-- that have not run (a producer pipelines add_bulk's calls, at most 32 unanswered:
-- minique/queue.py ADD_PIPELINE_DEPTH, so a call Redis refused unrun, or one overtaken,
-- leaves a gap until it comes again). A number further below the top counts as seen by
-- add.lua (a call that doubtful is not run twice), and as unknown by fence_add.lua. A
-- record made by a call other than the producer's first has the 48 numbers below it as
-- gaps. n1,n2,... are the numbers with notes (below), dropped with their notes once 48
-- below the top: a producer's own re-send never comes that late, and the notes of a
-- producer adding duplicates all day would otherwise pile up faster than the sweep's
-- sample goes (break: 3,000 duplicate adds left 3,000 notes). reply is add_flow's, for the
-- top. The sweep (sweep.lua) reads the last field as the record's time, and drops the
-- record's notes with it.
--
-- producer_turn(last record or false, this call's number as sent, producer, now) returns
--   nil, the stored reply (add_flow's, for the top; else nil), and add.lua's answer to a
--   re-send ({1, place in the call, id, duplicate (0/1), ..., now}: for the jobs whose outcome the
--   state no longer tells, their first run's: a fresh id given where the automatic one
--   was taken, a duplicate and the job it found; add.lua keeps them, msgpack, under
--   "<producer>:<number>"; a number fenced unrun by fence_add.lua has none) when the
--   number ran already;
--   else the record's head ("top[:gaps][;noted]") once this call has run, and, when this
--   call is not the new top (a gap that runs now), the top's stored reply to keep (or nil).
--   A caller that keeps notes for this call adds its number to the head (producer_noted).
-- Bounded: at most 49 gaps and 49 noted numbers are read or written.
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
  local top_s, gaps, mark = string.match(last, '^(%d+):?([%d,]*)(.?)')
  local seq, top = tonumber(seq_s), tonumber(top_s)
  if seq == top + 1 and gaps == '' and mark ~= ';' then return seq_s end  -- (the usual call)
  local noted = mark == ';' and string.match(last, '^[%d:,]*;([%d,]*)') or ''
  local reply = string.match(last, '^[%d:,;]*|(.*)|%d+$')  -- add_flow's, if any
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
    return (open == '' and top_s or top_s .. ':' .. open)
      .. (noted ~= '' and ';' .. noted or ''), reply
  end
  local open = {}
  for g in string.gmatch(gaps, '%d+') do
    if tonumber(g) >= seq - 48 then open[#open + 1] = g end
  end
  for g = math.max(top + 1, seq - 48), seq - 1 do open[#open + 1] = int_str(g) end
  local head = open[1] and seq_s .. ':' .. table.concat(open, ',') or seq_s
  if noted == '' then return head end
  -- The notes of numbers now more than 48 below the top go (see above).
  local keep, spent = {}, {}
  for n in string.gmatch(noted, '%d+') do
    if tonumber(n) >= seq - 48 then keep[#keep + 1] = n
    else spent[#spent + 1] = producer .. ':' .. n end
  end
  if spent[1] then redis.call('HDEL', BASE .. ':producers', unpack(spent)) end
  return keep[1] and head .. ';' .. table.concat(keep, ',') or head
end
