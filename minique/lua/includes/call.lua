-- The start of every call of a transition: the library's functions are created once, when
-- minique/scripts.py loads it, so what depends on the call (the queue's keys and prefixes)
-- is set here, and every per-call cache starts empty again. Included last: it reaches the
-- state of every other include.
--
-- The keys and prefixes depend on the queue alone, so they are derived again only when the
-- meta key differs from the one they were derived for (DERIVED_FOR, includes/base.lua):
-- building them, a dozen new strings, had been about 8k instructions per call. Given the
-- whole key vector, the call uses it as sent (GIVEN_K); given the meta key alone, the
-- vector derived from it (DERIVED_K).
local begin_call
do  -- (DERIVED_K and GIVEN_K are begin_call's alone: see NK's note in base.lua)
  local DERIVED_K, GIVEN_K = {}, K
  function begin_call(keys, args)
    local meta = keys[1]
    if meta ~= DERIVED_FOR then
      DERIVED_FOR = meta
      BASE = string.sub(meta, 1, #meta - 5)
      for i = 1, NK do DERIVED_K[KEY_ORDER[i]] = BASE .. KEY_SUFFIX[i] end
      LP = BASE .. ':logs:'
      DEDUPS, DEDUP_PREFIX = BASE .. ':dedups', BASE .. ':dedup:'
      GQ, GS, GI = BASE .. ':gready', BASE .. ':gsleep', BASE .. ':groups'
      GA, GP = BASE .. ':gactive', BASE .. ':gpaused'
      SCH_BASE, SCH_INDEX, SCH_REFILL = BASE, BASE .. ':schedulers', BASE .. ':schedulers:refill'
    end
    if keys[2] then
      K = GIVEN_K
      for i = 1, NK do K[KEY_ORDER[i]] = keys[i] end
    else
      K = DERIVED_K
    end
    CALL_ARGV, JP = args, args[1]
    emax, emitted, woken, extra_live, meta_cache = nil, 0, false, nil, nil
    ahead_told = nil
    clear_batched()
    pending = false
    gdefaults, dedups_trimmed, groups_stale_left = nil, false, false
    flow_work, flow_held_wait = nil, nil
  end
end
