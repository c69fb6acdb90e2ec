-- require (modules from scripts.dir only) and onair.http.request.
local env = require("testenv") -- written by the harness: { port = N }
local util = require("lib.util")
assert(util.double(21) == 42)
assert(require("lib.util") == util, "a module loads once")
local ok, err = pcall(require, "../etc/passwd")
assert(not ok and tostring(err):find("not a module name"), tostring(err))
ok, err = pcall(require, "nope")
assert(not ok and tostring(err):find("not found"), tostring(err))

ok, err = pcall(onair.http.request, { url = "ftp://x" }, function() end)
assert(not ok and tostring(err):find("not an http"), tostring(err))
ok, err = pcall(onair.http.request, {}, function() end)
assert(not ok and tostring(err):find("url is required"), tostring(err))
ok, err = pcall(onair.http.request, { url = "http://x" })
assert(not ok and tostring(err):find("bad argument"), tostring(err))

local pending = 2
local function finish()
  pending = pending - 1
  if pending == 0 then onair.store.set("done", true) end
end
onair.http.request({
  method = "POST", url = "http://127.0.0.1:" .. env.port .. "/score",
  json = { team = "a" }, decode_json = true, timeout_ms = 2000,
}, function(resp, e)
  assert(e == nil, e)
  assert(resp.status == 200)
  assert(resp.json.method == "POST" and resp.json.body == '{"team":"a"}', resp.body)
  assert(resp.headers["content-type"] == "application/json")
  finish()
end)
onair.http.request({ url = "http://127.0.0.1:1/refused", timeout_ms = 1000 }, function(resp, e)
  assert(resp == nil and type(e) == "string", "a refused connection gives an error")
  finish()
end)
