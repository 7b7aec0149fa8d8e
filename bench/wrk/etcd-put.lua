-- etcd v3 JSON gateway: a 100-byte put under a key no other request uses (keys and
-- values are base64 in the JSON body).
local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function base64(data)
  return ((data:gsub(".", function(x)
    local bits, byte = "", x:byte()
    for i = 8, 1, -1 do bits = bits .. (byte % 2 ^ i - byte % 2 ^ (i - 1) > 0 and "1" or "0") end
    return bits
  end) .. "0000"):gsub("%d%d%d?%d?%d?%d?", function(x)
    if #x < 6 then return "" end
    local c = 0
    for i = 1, 6 do c = c + (x:sub(i, i) == "1" and 2 ^ (6 - i) or 0) end
    return alphabet:sub(c + 1, c + 1)
  end) .. ({ "", "==", "=" })[#data % 3 + 1])
end
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
