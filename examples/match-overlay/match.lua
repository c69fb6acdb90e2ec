-- Seed 004's whole product as one plugin plus this script: poll a match API and show a live
-- scoreboard on the output (live and fallback alike). Needs plugins/scoreboard.wasm in
-- plugins.dir. The API URL is MATCH_URL, or the store key "match.url".
--   GET /api/match   the last data received (needs the admin token, like every /api/ route)

local MATCH_URL = "http://127.0.0.1:9000/match"
local POLL_MS = 2000
local PLACE = { x = 40, y = 40, z = 10 }

local last = onair.store.get("match.last")

local function show(m)
  onair.overlay.set("scoreboard", { plugin = "scoreboard", data = m, x = PLACE.x, y = PLACE.y, z = PLACE.z })
end

local function poll()
  local url = onair.store.get("match.url") or MATCH_URL
  onair.http.request({ url = url, decode_json = true, timeout_ms = 1500 }, function(r, err)
    if err then
      onair.log.warn("match API: " .. err)
    elseif r.status ~= 200 then
      onair.log.warn("match API answered " .. r.status)
    else
      last = r.json
      onair.store.set("match.last", last)
      show(last) -- onair re-renders only when the data changed
    end
  end)
end

-- at the top level: applied as soon as this script is (re)loaded, so the last score is on
-- screen after a restart or an edit before the first poll answers
if last then show(last) end
onair.after(0, poll)
onair.every(POLL_MS, poll)

onair.route("GET", "/api/match", function()
  return { json = last or {} }
end)
