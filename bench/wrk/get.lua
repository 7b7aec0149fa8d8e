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

done = function(summary, latency, requests)
  local seconds = summary.duration / 1e6
  io.write(string.format("RESULT rps=%.1f p50_ms=%.3f p99_ms=%.3f non2xx=%d socket_errors=%d\n",
    summary.requests / seconds, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
