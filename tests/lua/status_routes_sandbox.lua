-- the sandbox, onair.status and onair.route.
assert(io == nil and os == nil and debug == nil and package == nil)
assert(dofile == nil and loadfile == nil)
assert(load("\27Lua") == nil, "a truncated binary chunk is refused")
assert(string.dump == nil, "string.dump is gone: no bytecode is made inside the sandbox")

local st = onair.status()
assert(st.on_air == "fallback" and st.destinations[1].name == "fixture-default")

onair.route("GET", "/queue/:id", function(req)
  assert(req.method == "GET" and req.path == "/queue/7")
  assert(req.params.id == "7" and req.query.verbose == "1" and req.headers["x-test"] == "yes")
  return { status = 200, json = { id = tonumber(req.params.id), n = #req.body } }
end, { auth = false })
onair.route("POST", "/echo", function(req) return { status = 201, json = req.json } end, { auth = false })
onair.route("GET", "/boom", function() error("kaboom") end, { auth = false })
onair.route("GET", "/nonsense", function() return 42 end, { auth = false })
onair.route("GET", "/page", function() return { html = "<h1>hi</h1>" } end, { auth = false })
onair.route("GET", "/api/secret", function() return { body = "s", headers = { ["x-a"] = "b" } } end)
onair.route("GET", "/open", function() return { body = "o" } end, { auth = false })
onair.route("GET", "/closed", function() return { body = "c" } end, { auth = true })

local ok, err = pcall(onair.route, "GET", "/api/status", function() end)
assert(not ok and tostring(err):find("served by onair itself"), tostring(err))
ok, err = pcall(onair.route, "GET", "/queue/:x", function() end)
assert(not ok and tostring(err):find("declared twice"), tostring(err))
ok, err = pcall(onair.route, "BREW", "/tea", function() end)
assert(not ok and tostring(err):find("not one of"), tostring(err))
ok, err = pcall(onair.route, "GET", "relative", function() end)
assert(not ok and tostring(err):find("must start with"), tostring(err))
onair.on("stall", function()
  local ok2, err2 = pcall(onair.route, "GET", "/late", function() end)
  assert(not ok2 and tostring(err2):find("when the script loads"), tostring(err2))
end)

-- the memory cap (the harness sets 8 MiB)
ok, err = pcall(function()
  local t = {}
  for i = 1, 1e9 do t[i] = string.rep("x", 4096) .. i end
end)
assert(not ok and tostring(err):find("memory"), tostring(err))
collectgarbage()
onair.store.set("done", true)
