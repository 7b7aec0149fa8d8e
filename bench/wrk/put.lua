-- PUT a 100-byte value (VALUE_BYTES) under a key no other request uses, so no
-- write creates a sibling: each thread numbers its own keys.
local value = string.rep("v", tonumber(os.getenv("VALUE_BYTES") or "100"))
local counter = 0

setup = function(thread)
  counter = counter + 1
  thread:set("prefix", "w" .. (os.getenv("WRK_ID") or "") .. "." .. counter .. "-")
end

init = function(args)
  sequence = 0
end

request = function()
  sequence = sequence + 1
  return wrk.format("PUT", "/v1/kv/default/" .. prefix .. sequence,
    { ["Content-Type"] = "application/octet-stream" }, value)
end

done = function(summary, latency, requests)
  local seconds = summary.duration / 1e6
  io.write(string.format("RESULT rps=%.1f p50_ms=%.3f p99_ms=%.3f non2xx=%d socket_errors=%d\n",
    summary.requests / seconds, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
