-- Linearizable counter add (+1) on a random key among KEYS counters (uniform), as
-- seat counters are updated: after a key's first add, its leader holds the promise
-- of its next ballot, so most adds take one round trip.
local keys = tonumber(os.getenv("KEYS") or "10000")
local counter = 0

setup = function(thread)
  counter = counter + 1
  thread:set("seed", counter + 1000 * tonumber(os.getenv("WRK_ID") or "0"))
end

init = function(args)
  math.randomseed(seed * 7919)
end

request = function()
  return wrk.format("POST", "/v1/kv/" .. (os.getenv("TABLE") or "seats") .. "/counter" .. math.random(0, keys - 1) .. "/add?delta=1")
end

dofile("bench/wrk/report.lua")
