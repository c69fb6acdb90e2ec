-- onair's default switching policy. Edit it to change when the output goes live or falls back.
-- Events and their fields: docs/events.md. If this script fails to load or a handler errors,
-- onair logs it (file:line) and applies the same behaviour built in.

-- A publisher starts: put it on air (the cut happens on its first keyframe).
onair.on("publish", function(ev)
  onair.switch("live", { reason = "publish of session " .. ev.session })
end)

-- A stalled publisher sends media again.
onair.on("resume", function(ev)
  onair.switch("live", { reason = "resume of session " .. ev.session })
end)

-- The publisher on air disconnected or stopped.
onair.on("unpublish", function(ev)
  if ev.on_air then
    onair.switch("fallback", { reason = "unpublish of session " .. ev.session .. " (" .. ev.reason .. ")" })
  end
end)

-- The publisher on air sends nothing while its connection stays open.
onair.on("stall", function(ev)
  if ev.on_air then
    onair.switch("fallback", { reason = "stall of session " .. ev.session .. ": no media for " .. ev.silent_ms .. " ms" })
  end
end)
