-- queue.lua: many streamers share one channel, one on air at a time (replaces seed 003, Motherstream).
-- Publishers join the queue in publish order; the front is on air. At the time limit the one on air
-- is kicked and the next goes on air on its keyframe (the fallback only when nobody waits); the
-- kicked key is refused for the block time unless the block is toggled off. The queue is stored:
-- after a restart (or an OBS reconnect) a streamer back within REJOIN_GRACE_S keeps their place.
-- A streamer is named by their account (sign-up page), else by their redacted stream key.
-- Routes (seed 003's): public, for streamers and for a browser source showing the queue on
--   stream: GET /queue-list (HTML), GET /queue-json; for the admin (login or token, the default):
--   GET /update-timer/:seconds?reset_time=true|false, GET /update-block-toggle/.
-- Store keys read at load: queue.time_limit_s (600), queue.block_s (120), and queue.obs =
--   {host=, port=, password=, scene=} to switch OBS to `scene` when a stream ends.
-- Copy failover.lua from this folder too: it keeps the built-in policy from switching on its own.

local KEY = "queue.state"
local REJOIN_GRACE_S = 120
local NEXT_OVERLAY_MS = 3000

local st = onair.store.get(KEY) or {}
st.queue = st.queue or {} -- { {name=, joined_ms=, left_ms=} } in order
st.blocked = st.blocked or {} -- name -> ms since the epoch when the block ends
if st.block == nil then st.block = true end
st.time_limit_s = onair.store.get("queue.time_limit_s") or st.time_limit_s or 600
st.block_s = onair.store.get("queue.block_s") or st.block_s or 120

local live = {} -- name -> publish session (only while connected)
local on_air, on_air_since -- the name on air, and since when (ms)
local kick_when_next_on_air -- session of the one whose time is up, kicked once the next is on air

local function save() onair.store.set(KEY, st) end

local function find(name)
  for i, e in ipairs(st.queue) do if e.name == name then return i, e end end
end

-- After a reload, publishers still connected are found again; after a restart, the queue's
-- entries wait REJOIN_GRACE_S for their streamer to reconnect.
local ok, status = pcall(onair.status) -- not available while onair itself starts: nobody publishes yet
for _, s in ipairs(ok and status.sessions or {}) do
  local name = s.account or s.key
  live[name] = s.session
  if not find(name) then table.insert(st.queue, { name = name, joined_ms = onair.now() }) end
  if s.on_air then on_air, on_air_since = name, onair.now() end
end
for _, e in ipairs(st.queue) do
  if live[e.name] then e.left_ms = nil else e.left_ms = e.left_ms or onair.now() end
end

local function name_of(session)
  for name, s in pairs(live) do if s == session then return name end end
end

local function front()
  for _, e in ipairs(st.queue) do if live[e.name] then return e end end
end

local obs_cfg = onair.store.get("queue.obs")
local obs = obs_cfg and onair.obs.connect(obs_cfg)

local function stream_ended(name)
  if obs and obs_cfg.scene then obs:request("SetCurrentProgramScene", { sceneName = obs_cfg.scene }) end
end

-- Puts the front of the queue on air (or the fallback when nobody is connected).
local function advance(reason)
  local f = front()
  if not f then
    if on_air then onair.switch("fallback", { reason = reason .. ": nobody waits" }) end
    on_air = nil
    return
  elseif f.name == on_air then return end
  on_air, on_air_since = f.name, onair.now()
  onair.overlay.text("queue-next", "Next: " .. f.name, { x = 40, y = 40, size = 40, z = 20 })
  onair.after(NEXT_OVERLAY_MS, function() onair.overlay.hide("queue-next") end)
  onair.switch("live", { session = live[f.name], reason = reason .. ": " .. f.name .. " is next" })
end

local function time_up()
  local name = on_air
  local session = live[name]
  st.blocked[name] = onair.now() + st.block_s * 1000
  local i = find(name); if i then table.remove(st.queue, i) end
  save()
  onair.log.info(name .. " reached the time limit of " .. st.time_limit_s .. " s")
  if front() then
    kick_when_next_on_air = session
    advance("time limit of " .. name)
    onair.after(5000, function() -- in case the next one never sends a keyframe
      if kick_when_next_on_air == session then onair.kick(session, "time limit") end
    end)
  else
    onair.kick(session, "time limit")
  end
end

onair.on("publish", function(ev)
  local name = ev.account or ev.key
  local until_ms = st.blocked[name]
  if st.block and until_ms and onair.now() < until_ms then
    local left = math.ceil((until_ms - onair.now()) / 1000)
    return onair.reject(name .. " reached the time limit: re-join in " .. left .. " s")
  end
  st.blocked[name] = nil
  live[name] = ev.session
  local _, e = find(name)
  if e then e.left_ms = nil else table.insert(st.queue, { name = name, joined_ms = onair.now() }) end
  save()
  advance("publish of " .. name)
end)

onair.on("unpublish", function(ev)
  local name = name_of(ev.session)
  if not name then return end
  live[name] = nil
  if ev.session == kick_when_next_on_air then kick_when_next_on_air = nil end
  local _, e = find(name)
  if e then e.left_ms = onair.now() end
  save()
  if name == on_air then
    stream_ended(name)
    on_air = nil
    advance(name .. " left (" .. ev.reason .. ")")
  end
end)

onair.on("switched", function(ev)
  if ev.to == "live" and kick_when_next_on_air and ev.session ~= kick_when_next_on_air then
    onair.kick(kick_when_next_on_air, "time limit: the next streamer is on air")
    kick_when_next_on_air = nil
  end
end)

onair.on("stall", function(ev)
  if ev.on_air then onair.switch("fallback", { reason = "stall of " .. (name_of(ev.session) or "?") }) end
end)

onair.on("resume", function(ev)
  if on_air and live[on_air] == ev.session then onair.switch("live", { session = ev.session, reason = "resume of " .. on_air }) end
end)

onair.every(500, function()
  local now, changed = onair.now(), false
  for i = #st.queue, 1, -1 do
    local e = st.queue[i]
    if e.left_ms and now - e.left_ms > REJOIN_GRACE_S * 1000 then
      table.remove(st.queue, i)
      changed = true
    end
  end
  for name, until_ms in pairs(st.blocked) do
    if until_ms <= now then st.blocked[name], changed = nil, true end
  end
  if changed then save() end
  if on_air and not kick_when_next_on_air and now - on_air_since >= st.time_limit_s * 1000 then time_up() end
end)

local function entries()
  local out, now = onair.array(), onair.now()
  for i, e in ipairs(st.queue) do
    local state = e.name == on_air and "on-air" or (live[e.name] and "waiting" or "away")
    local left = state == "on-air" and math.max(0, st.time_limit_s - (now - on_air_since) // 1000) or nil
    out[i] = { position = i, name = e.name, state = state, session = live[e.name],
      waiting_s = (now - e.joined_ms) // 1000, time_left_s = left }
  end
  return out
end

local ESC = { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;" }
local function escape(s) return (s:gsub('[&<>"]', ESC)) end

onair.route("GET", "/queue-json", function() return { json = entries() } end, { auth = false })

onair.route("GET", "/queue-list", function()
  local rows = {}
  for _, e in ipairs(entries()) do
    rows[#rows + 1] = ("<tr><td>%d</td><td>%s</td><td>%s</td><td>%d s</td><td>%s</td></tr>"):format(
      e.position, escape(e.name), e.state, e.waiting_s, e.time_left_s and (e.time_left_s .. " s") or "")
  end
  return { html = "<!doctype html><meta charset=utf-8><meta http-equiv=refresh content=2><title>Queue</title>"
    .. "<h1>Queue</h1><table><tr><th>#</th><th>Name</th><th>State</th><th>Waiting for</th><th>Time left</th></tr>"
    .. table.concat(rows) .. "</table><p>Time limit " .. st.time_limit_s .. " s; re-join block "
    .. (st.block and (st.block_s .. " s") or "off") .. "</p>" }
end, { auth = false })

onair.route("GET", "/update-timer/:seconds", function(req)
  local s = tonumber(req.params.seconds)
  if not s or s < 1 or s ~= math.floor(s) then
    return { status = 400, json = { error = "seconds: a whole number of seconds, at least 1" } }
  end
  st.time_limit_s = s
  onair.store.set("queue.time_limit_s", s)
  if req.query.reset_time == "true" and on_air then on_air_since = onair.now() end
  save()
  local left = on_air and math.max(0, s - (onair.now() - on_air_since) // 1000) or nil
  return { json = { time_limit_s = s, time_left_s = left } }
end)

onair.route("GET", "/update-block-toggle/", function()
  st.block = not st.block
  save()
  return { json = { block = st.block, block_s = st.block_s } }
end)
