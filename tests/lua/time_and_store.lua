-- onair.now, onair.after/every/cancel and onair.store.
local t0 = onair.now()
assert(math.type(t0) == "integer" and t0 > 1600000000000, "now() is ms since the Unix epoch")

onair.store.set("t.table", { a = 1, list = { 1, 2, 3 }, name = "x" })
local v = onair.store.get("t.table")
assert(v.a == 1 and v.list[3] == 3 and v.name == "x")
onair.store.delete("t.table")
assert(onair.store.get("t.table") == nil)
local ok, err = pcall(onair.store.set, "f", function() end)
assert(not ok and tostring(err):find("JSON"), tostring(err))
ok, err = pcall(onair.store.get)
assert(not ok and tostring(err):find("bad argument"), tostring(err))

ok, err = pcall(onair.after, -5, function() end)
assert(not ok and tostring(err):find("not a valid delay"), tostring(err))
ok, err = pcall(onair.every, 1, function() end)
assert(not ok and tostring(err):find("minimum 10 ms"), tostring(err))
ok, err = pcall(onair.after, 10, "not a function")
assert(not ok and tostring(err):find("bad argument"), tostring(err))

local fired_after, ticks = 0, 0
onair.after(50, function() fired_after = fired_after + 1 end)
local cancelled = onair.after(60, function() error("a cancelled timer ran") end)
assert(onair.cancel(cancelled) == true)
assert(onair.cancel(cancelled) == false)
local id
id = onair.every(20, function()
  ticks = ticks + 1
  if ticks == 5 then
    onair.cancel(id)
    onair.after(100, function()
      assert(ticks == 5, "every kept running after cancel")
      assert(fired_after == 1, "after fired " .. fired_after .. " times")
      assert(onair.now() - t0 >= 100)
      onair.store.set("done", true)
    end)
  end
end)
