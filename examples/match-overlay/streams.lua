-- Seed 004's stream manager, with its paths, bodies, status codes and JSON: each stream is an
-- onair channel whose stream key is stream_name (the camera publishes to
-- rtmp://HOST:1935/live/<stream_name>), whose destination is youtube_url, and whose scoreboard
-- shows what the match API answers for that stream. Needs plugins/scoreboard.wasm.
--   POST /start_stream {"youtube_url", "stream_name"}  200, 400 (missing/invalid), 409 (active)
--   POST /stop_stream  {"stream_name"}                 200, 400 (missing), 404 (not found)
--   GET  /list_streams  {"<stream_name>": {"youtube_url", "uptime"}}
-- Unlike seed 004, the routes need a login or the admin token (the default for a route), and
-- list_streams shows the URL redacted.

local MATCH_URL = "http://127.0.0.1:9000/match/{stream}" -- or the store key "match.url"
local POLL_MS = 2000
local PLACE = { x = 40, y = 40, z = 10 }

-- stream_name → youtube_url, kept across restarts (the channels are kept by onair itself)
local streams = onair.store.get("streams") or {}

local function answer(status, json) return { status = status, json = json } end
local function save() onair.store.set("streams", streams) end

local function poll(name)
  local url = (onair.store.get("match.url") or MATCH_URL):gsub("{stream}", name)
  onair.http.request({ url = url, decode_json = true, timeout_ms = 1500 }, function(r, err)
    if not streams[name] then return end -- stopped meanwhile
    if err or r.status ~= 200 then
      onair.log.warn("match API for " .. name .. ": " .. (err or ("status " .. r.status)))
      return
    end
    local ok, ch = pcall(onair.channel, name)
    if ok then
      ch.overlay.set("scoreboard", { plugin = "scoreboard", data = r.json, x = PLACE.x, y = PLACE.y, z = PLACE.z })
    end
  end)
end

onair.every(POLL_MS, function()
  for name in pairs(streams) do poll(name) end
end)

onair.route("POST", "/start_stream", function(req)
  local b = type(req.json) == "table" and req.json or {}
  local url, name = b.youtube_url, b.stream_name
  if type(url) ~= "string" or url == "" or type(name) ~= "string" or name == "" then
    return answer(400, { error = "youtube_url and stream_name are required" })
  end
  if streams[name] then
    return answer(409, { error = "Stream " .. name .. " is already active" })
  end
  local ok, err = pcall(onair.channel_create, {
    id = name, keys = { name }, destinations = { { name = "youtube", url = url } },
  })
  if not ok then
    local exists = tostring(err):find("exists", 1, true)
    return answer(exists and 409 or 400, { error = tostring(err) })
  end
  streams[name] = url
  save()
  poll(name)
  return answer(200, { message = "Stream " .. name .. " started successfully", youtube_url = url })
end)

onair.route("POST", "/stop_stream", function(req)
  local name = type(req.json) == "table" and req.json.stream_name or nil
  if type(name) ~= "string" or name == "" then
    return answer(400, { error = "stream_name is required" })
  end
  if not streams[name] then
    return answer(404, { error = "Stream " .. name .. " not found" })
  end
  streams[name] = nil
  save()
  local ok, ch = pcall(onair.channel, name)
  if ok then ch:delete() end
  return answer(200, { message = "Stream " .. name .. " stopped successfully" })
end)

onair.route("GET", "/list_streams", function()
  local out = {}
  for _, c in ipairs(onair.channels()) do
    if streams[c.id] then
      local d = c.destinations[1]
      out[c.id] = { youtube_url = d and d.url or "", uptime = c.uptime_s or 0 }
    end
  end
  return answer(200, out)
end)
