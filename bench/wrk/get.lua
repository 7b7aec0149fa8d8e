-- GET a random key among KEYS preloaded ones: key0 … key(KEYS-1) of table "default".
dofile("bench/wrk/random-key.lua")

init = function(args)
  seed_random()
end

request = function()
  return wrk.format("GET", "/v1/kv/default/key" .. math.random(0, keys - 1))
end

dofile("bench/wrk/report.lua")
