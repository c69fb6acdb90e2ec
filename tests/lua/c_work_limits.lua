-- Work that runs in C, where the instruction hook cannot stop it, is bounded by size.
local big = string.rep("a", 2 * 1024 * 1024)  -- 2 MiB, over the 1 MiB pattern subject limit
local ok, err = pcall(string.find, big, "a-b")
assert(not ok and tostring(err):find("over the 1024 KiB pattern limit"), tostring(err))
ok, err = pcall(function() return big:match("(a+)b") end)
assert(not ok and tostring(err):find("string.match"), tostring(err))
ok, err = pcall(string.gsub, big, "a", "b")
assert(not ok, "gsub on a 2 MiB subject is refused")
ok, err = pcall(string.gmatch, big, "a")
assert(not ok, "gmatch on a 2 MiB subject is refused")
-- a plain find is linear and allowed
assert(big:find("b", 1, true) == nil)
-- patterns with many repetitions are refused whatever the subject
ok, err = pcall(string.find, "abc", "a-b-c-d-e-")
assert(not ok and tostring(err):find("5 repetitions"), tostring(err))
-- escaped and set characters are not repetitions
assert(("2026-11-23"):match("^(%d+)%-(%d+)%-(%d+)$") == "2026")
assert(("x-y"):find("[%-]") == 2)
assert(("aaa"):gsub("a+", "b") == "b")
-- a small subject with four repetitions still works
assert(("key=value; k2=v2"):match("(%w+)=(%w+);%s(%w+)=(%w+)") == "key")
onair.store.set("done", true)
