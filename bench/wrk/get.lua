-- GET a random key among KEYS preloaded ones: key0 … key(KEYS-1) of table "default".
local keys = tonumber(os.getenv("KEYS") or "10000")
local counter = 0

setup = function(thread)
  counter = counter + 1
  thread:set("seed", counter)
end

init = function(args)
  math.randomseed(seed * 7919)
end

request = function()
  return wrk.format("GET", "/v1/kv/default/key" .. math.random(0, keys - 1))
end

dofile("bench/wrk/report.lua")
