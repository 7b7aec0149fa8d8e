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

dofile("bench/wrk/report.lua")
