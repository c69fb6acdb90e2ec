-- Failover with a flap guard: fall back at once, but return to live only after the feed has been
-- healthy (publishing, not stalled) for HEALTHY_MS. A feed that keeps dropping stays on the
-- fallback instead of flapping. Drop this file into scripts/ in place of the default failover.lua.

local HEALTHY_MS = 5000

local healthy_since = {}   -- session -> onair.now() when it last became healthy

local function go_live_when_stable(ev)
  local session, since = ev.session, onair.now()
  healthy_since[session] = since
  onair.after(HEALTHY_MS, function()
    if healthy_since[session] == since then
      -- a timer has no event: address the session's channel explicitly
      onair.channel(ev.channel):switch("live", { reason = "session " .. session .. " healthy for " .. HEALTHY_MS .. " ms" })
    end
  end)
end

onair.on("publish", go_live_when_stable)
onair.on("resume", go_live_when_stable)

onair.on("stall", function(ev)
  healthy_since[ev.session] = nil
  if ev.on_air then onair.switch("fallback", { reason = "stall of session " .. ev.session }) end
end)

onair.on("unpublish", function(ev)
  healthy_since[ev.session] = nil
  if ev.on_air then onair.switch("fallback", { reason = "unpublish of session " .. ev.session }) end
end)
