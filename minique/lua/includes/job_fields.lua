-- The fields a new job's hash starts with (add.lua, add_flow.lua). Defaults are not
-- written: no 'o' for the default options (the client sends ''), no 'p' for priority 0,
-- no 'atm'/'ats' until a first attempt; every reader takes a missing field as its default
-- (take.lua, finish.lua, job.py). A waiting job's hash then stays in a small listpack:
-- ~80 bytes instead of ~160 for a plain job (benchmarks/add_profile.py --memory).
-- Every field past the first three pairs is optional, and its callers append theirs
-- there too: base.lua enqueue_ready reads an empty seventh item as a bare job (its take
-- reads the first three fields alone).
local function job_fields(name, data, opts, prio, now_s)
  -- Room for 14 items made at once (the nils size the table's array part; the length
  -- stays 6): the options, priority, group, dedup id and the state fields go in without
  -- the array part growing (a regrowth per add: ~1k instructions).
  local fields = {'n', name, 'd', data, 'ts', now_s, nil, nil, nil, nil, nil, nil, nil, nil}
  if opts ~= '' then fields[#fields + 1] = 'o'; fields[#fields + 1] = opts end
  if prio ~= '0' then fields[#fields + 1] = 'p'; fields[#fields + 1] = prio end
  return fields
end
