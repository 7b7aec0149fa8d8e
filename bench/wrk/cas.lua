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

dofile("bench/wrk/report.lua")
