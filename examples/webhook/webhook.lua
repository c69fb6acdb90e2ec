-- Webhook notifications: POST a JSON body to WEBHOOK_URL (or the store key "webhook.url") on
-- publish, unpublish and every switch. The body is the event as Lua sees it plus "sent_at" (ms
-- since the Unix epoch). Failures are logged, never retried, and never touch the stream.

local WEBHOOK_URL = "http://127.0.0.1:9000/onair"

local function notify(ev)
  local url = onair.store.get("webhook.url") or WEBHOOK_URL
  local body = {}
  for k, v in pairs(ev) do body[k] = v end
  body.sent_at = onair.now()
  onair.http.request({ method = "POST", url = url, json = body, timeout_ms = 3000 }, function(resp, err)
    if err then
      onair.log.warn("webhook " .. ev.event .. " failed: " .. err)
    elseif resp.status >= 300 then
      onair.log.warn("webhook " .. ev.event .. " answered " .. resp.status)
    end
  end)
end

onair.on("publish", notify)
onair.on("unpublish", notify)
onair.on("switched", notify)
