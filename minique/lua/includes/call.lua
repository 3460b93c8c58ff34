-- The start of every call of a transition: the library's functions are created once, when
-- minique/scripts.py loads it, so what depends on the call (the queue's keys and prefixes)
-- is set here, and every per-call cache starts empty again. Included last: it reaches the
-- state of every other include.
local function begin_call(keys, args)
  for i = 1, NK do K[KEY_ORDER[i]] = keys[i] end
  CALL_ARGV, JP = args, args[1]
  BASE = string.sub(K.meta, 1, #K.meta - 5)
  LP = BASE .. ':logs:'
  DEDUPS, DEDUP_PREFIX = BASE .. ':dedups', BASE .. ':dedup:'
  GQ, GS, GI = BASE .. ':gready', BASE .. ':gsleep', BASE .. ':groups'
  GA, GP = BASE .. ':gactive', BASE .. ':gpaused'
  SCH_BASE, SCH_INDEX, SCH_REFILL = BASE, BASE .. ':schedulers', BASE .. ':schedulers:refill'
  emax, emitted, woken, extra_live, meta_cache = nil, 0, false, nil, nil
  batched, pending = {}, false
  gdefaults, dedups_trimmed, groups_stale_left = nil, false, false
end
