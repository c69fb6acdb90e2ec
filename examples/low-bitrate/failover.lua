-- NOALBS-style low-bitrate switching: the core measures each publisher's incoming kbit/s and
-- reports it once a second (event "ingest-stats"). Below LOW_KBPS for LOW_SECONDS in a row, the
-- output falls back ("the IRL stream is breaking up"); at or above RECOVER_KBPS for
-- RECOVER_SECONDS in a row it returns to live. Stalls and disconnects fall back at once.

local LOW_KBPS, LOW_SECONDS = 800, 2
local RECOVER_KBPS, RECOVER_SECONDS = 1500, 3

local low, good = {}, {}

onair.on("publish", function(ev)
  low[ev.session], good[ev.session] = 0, 0
  onair.switch("live", { reason = "publish of session " .. ev.session })
end)

onair.on("ingest-stats", function(ev)
  local s = ev.session
  if ev.kbps < LOW_KBPS then
    low[s], good[s] = (low[s] or 0) + 1, 0
    if ev.on_air and low[s] == LOW_SECONDS then
      onair.switch("fallback", { reason = "low bitrate: " .. ev.kbps .. " kbit/s for " .. LOW_SECONDS .. " s" })
    end
  elseif ev.kbps >= RECOVER_KBPS then
    good[s], low[s] = (good[s] or 0) + 1, 0
    if good[s] == RECOVER_SECONDS and onair.status().on_air == "fallback" then
      onair.switch("live", { reason = "bitrate recovered: " .. ev.kbps .. " kbit/s" })
    end
  end
end)

onair.on("stall", function(ev)
  if ev.on_air then onair.switch("fallback", { reason = "stall of session " .. ev.session }) end
end)

onair.on("unpublish", function(ev)
  low[ev.session], good[ev.session] = nil, nil
  if ev.on_air then onair.switch("fallback", { reason = "unpublish of session " .. ev.session }) end
end)
