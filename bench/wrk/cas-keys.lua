-- Linearizable counter add (+1) on a random key among KEYS counters (uniform), as
-- seat counters are updated: after a key's first add, its leader holds the promise
-- of its next ballot, so most adds take one round trip.
dofile("bench/wrk/random-key.lua")

init = function(args)
  seed_random()
end

request = function()
  return wrk.format("POST", "/v1/kv/" .. (os.getenv("TABLE") or "seats") .. "/counter" .. math.random(0, keys - 1) .. "/add?delta=1")
end

dofile("bench/wrk/report.lua")
