-- etcd v3 JSON gateway: a 100-byte put under a key no other request uses (keys and
-- values are base64 in the JSON body).
dofile("bench/wrk/base64.lua")
local value = base64(string.rep("v", tonumber(os.getenv("VALUE_BYTES") or "100")))
local counter = 0

setup = function(thread)
  counter = counter + 1
  thread:set("prefix", "e" .. (os.getenv("WRK_ID") or "") .. "." .. counter .. "-")
end

init = function(args)
  sequence = 0
end

request = function()
  sequence = sequence + 1
  local body = '{"key":"' .. base64(prefix .. sequence) .. '","value":"' .. value .. '"}'
  return wrk.format("POST", "/v3/kv/put", { ["Content-Type"] = "application/json" }, body)
end

dofile("bench/wrk/report.lua")
