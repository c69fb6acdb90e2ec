-- Seed 000's REST API, rebuilt as script routes over onair's own actions. Every route is under
-- /api/, so it needs "Authorization: Bearer <http.admin_token>" (or a control-room login).
--   POST /api/start         connect every destination          (seed: start streaming)
--   POST /api/stop          disconnect every destination       (seed: stop streaming)
--   POST /api/set_fallback  {"type":"image","filename":"x.jpg"} fallback from MEDIA_DIR
--   GET  /api/stream        {"running", "on_air", "fallback", "destinations"}
-- The seed's GET /api/status is onair's own built-in /api/status (a superset).

local MEDIA_DIR = "media/"

local function each_destination(f)
  for _, d in ipairs(onair.destinations.list()) do f(d.name) end
end

onair.route("POST", "/api/start", function()
  each_destination(onair.destinations.enable)
  return { status = 202, json = { ok = true, action = "start" } }
end)

onair.route("POST", "/api/stop", function()
  each_destination(onair.destinations.disable)
  return { status = 202, json = { ok = true, action = "stop" } }
end)

onair.route("POST", "/api/set_fallback", function(req)
  local j = req.json
  if type(j) ~= "table" or type(j.filename) ~= "string" or j.filename:find("/", 1, true)
      or j.filename:find("..", 1, true) then
    return { status = 400, json = { error = 'expected {"type": "image"|"video", "filename": "name.ext"}' } }
  end
  onair.set_fallback(MEDIA_DIR .. j.filename)
  return { status = 202, json = { ok = true, fallback = MEDIA_DIR .. j.filename } }
end)

onair.route("GET", "/api/stream", function()
  local st = onair.status()
  local running = false
  for _, d in ipairs(st.destinations) do
    if d.state ~= "disabled" then running = true end
  end
  return { json = { running = running, on_air = st.on_air, fallback = st.fallback, destinations = st.destinations } }
end)
