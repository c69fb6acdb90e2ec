-- onair.on, the action functions and onair.log: argument checks and error paths.
local names = { "publish", "unpublish", "stall", "resume", "ingest-stats", "switched",
  "destination-up", "destination-down", "destination-retry" }
for _, name in ipairs(names) do
  onair.on(name, function(ev)
    assert(ev.event == name, "payload names its event")
    assert(ev.channel == "default", "payload names its channel")
  end)
end
local ok, err = pcall(onair.on, "stalled", function() end)
assert(not ok and tostring(err):find('unknown event "stalled"'), tostring(err))
ok, err = pcall(onair.on, "stall", 42)
assert(not ok and tostring(err):find("bad argument"), tostring(err))

ok, err = pcall(onair.switch, "backup")
assert(not ok and tostring(err):find('expected "live" or "fallback"'), tostring(err))
ok, err = pcall(onair.switch, "fallback", { media = 5 })
assert(ok, "a number media path is coerced to a string: " .. tostring(err))
ok, err = pcall(onair.switch, "live", "not a table")
assert(not ok and tostring(err):find("bad argument"), tostring(err))

ok, err = pcall(onair.reject, "no")
assert(not ok and tostring(err):find("only a publish handler"), tostring(err))
onair.on("publish", function(ev)
  assert(type(ev.session) == "number" and type(ev.key) == "string" and ev.addr:find(":"))
  local ok2 = pcall(onair.reject)
  assert(not ok2, "reject needs a reason")
end)

ok, err = pcall(onair.kick, "abc")
assert(not ok and tostring(err):find("bad argument"), tostring(err))
assert(pcall(onair.kick, 3, "testing"))
assert(pcall(onair.set_fallback, "media/brb.png"))
assert(pcall(onair.set_fallback, nil))
ok = pcall(onair.set_fallback, {})
assert(not ok, "set_fallback takes a path or nil")

ok, err = pcall(onair.destinations.add, "yt", "http://x/y")
assert(not ok and tostring(err):find("rtmp://"), tostring(err))
assert(pcall(onair.destinations.add, "yt", "rtmp://a.rtmp.youtube.com/live2/key"))
for _, f in ipairs({ "remove", "enable", "disable" }) do
  ok = pcall(onair.destinations[f])
  assert(not ok, f .. " without a name must fail")
  assert(pcall(onair.destinations[f], "yt"))
end
local list = onair.destinations.list()
assert(type(list) == "table" and list[1].name == "fixture-default", "list mirrors /api/status")

onair.log.info("hello from the test")
ok = pcall(onair.log.warn, nil)
assert(not ok, "log needs a message")

-- returning false stops later handlers
local order = {}
onair.on("stall", function() order[#order + 1] = 1; return false end)
onair.on("stall", function() order[#order + 1] = 2 end)
onair.on("resume", function()
  assert(#order == 1 and order[1] == 1, "the handler after 'return false' ran")
  onair.store.set("done", true)
end)

-- onair.overlay
assert(pcall(onair.overlay.set, "score", { plugin = "scoreboard", data = { home = { name = "A", score = 1 } }, x = 10, y = 20, z = 2 }))
assert(pcall(onair.overlay.set, "logo", { png = "media/logo.png", x = 1180, y = 20, live_only = true }))
ok, err = pcall(onair.overlay.set, "x", { x = 1 })
assert(not ok and tostring(err):find("plugin= "), tostring(err))
assert(pcall(onair.overlay.text, "lower-third", "Hello", { size = 40, color = "#ffcc00", x = 40, y = 600 }))
assert(pcall(onair.overlay.text, "t2", "Hi", { color = 0xff0000ff }))
ok, err = pcall(onair.overlay.text, "t3", "Hi", { color = "red" })
assert(not ok and tostring(err):find("#RRGGBB"), tostring(err))
ok, err = pcall(onair.overlay.text, "t4")
assert(not ok and tostring(err):find("bad argument"), tostring(err))
assert(pcall(onair.overlay.hide, "score"))
