-- etcd v3 JSON gateway: a linearizable read (etcd's default range) of a random key
-- among KEYS preloaded ones, key0 … key(KEYS-1), as get.lua reads Ringstore's.
dofile("bench/wrk/base64.lua")
dofile("bench/wrk/random-key.lua")

init = function(args)
  seed_random()
  bodies = {}
  for i = 0, keys - 1 do bodies[i] = '{"key":"' .. base64("key" .. i) .. '"}' end
end

request = function()
  return wrk.format("POST", "/v3/kv/range", { ["Content-Type"] = "application/json" }, bodies[math.random(0, keys - 1)])
end

dofile("bench/wrk/report.lua")
