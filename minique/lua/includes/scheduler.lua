-- Job schedulers hook (see minique/scheduler.py). take_jobs calls this for every job it
-- moves to active; a job produced by a scheduler carries the field 'sch' (its scheduler id).
local function scheduler_on_take(jk, id, now)
end
