-- Linearizable counter add (+1) on a key no other request uses: uncontended CAS.
-- Each thread numbers its own keys, so no two requests race on one key.
local counter = 0

setup = function(thread)
  counter = counter + 1
  thread:set("prefix", "c" .. (os.getenv("WRK_ID") or "") .. "." .. counter .. "-")
end

init = function(args)
  sequence = 0
end

request = function()
  sequence = sequence + 1
  return wrk.format("POST", "/v1/kv/" .. (os.getenv("TABLE") or "seats") .. "/" .. prefix .. sequence .. "/add?delta=1")
end

done = function(summary, latency, requests)
  local seconds = summary.duration / 1e6
  io.write(string.format("RESULT rps=%.1f p50_ms=%.3f p99_ms=%.3f non2xx=%d socket_errors=%d\n",
    summary.requests / seconds, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
