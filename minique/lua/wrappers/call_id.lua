-- The body of a transition with a "--@call_id" line runs in place of the --@body line
-- below, with its call id (its last argument, minique/scripts.py) as `call_id`: it keeps
-- what a re-send needs itself (a job's progress and log, where a key per call would cost
-- more than a field of the job).
return (function(call_id)
  begin_call(KEYS, ARGV)
--@body
end)(table.remove(ARGV))
