-- Shared by the scripts that pick a random key among KEYS ones: each wrk thread
-- seeds its own generator, apart from every other thread of this wrk and (with
-- WRK_ID, set by wrk_spread) of the other wrk processes of a run.
keys = tonumber(os.getenv("KEYS") or "10000")
local counter = 0

setup = function(thread)
  counter = counter + 1
  thread:set("seed", counter + 1000 * tonumber(os.getenv("WRK_ID") or "0"))
end

-- The generator for this thread; call it from init.
function seed_random()
  math.randomseed(seed * 7919)
end
