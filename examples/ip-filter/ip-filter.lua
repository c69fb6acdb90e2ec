-- Accept publishers from public addresses only (seed 002's "external publisher" rule): loopback,
-- RFC 1918, CGNAT (100.64/10), link-local and IPv6 unique-local/link-local sources are refused.
-- For tests and local OBS, allow loopback with: onair.store.set("ip_filter.allow_loopback", true)
-- (or put {"ip_filter.allow_loopback": true} in the store file before starting).
-- A rejection drops every other action asked for during that publish, whatever the script order.

local function private(ip)
  local a, b = ip:match("^(%d+)%.(%d+)%.%d+%.%d+$")
  if a then
    a, b = tonumber(a), tonumber(b)
    return a == 10 or a == 127 or (a == 172 and b >= 16 and b <= 31) or (a == 192 and b == 168)
      or (a == 169 and b == 254) or (a == 100 and b >= 64 and b <= 127) or a == 0
  end
  ip = ip:lower()
  return ip == "::1" or ip:match("^f[cd]") ~= nil or ip:match("^fe[89ab]") ~= nil
    or ip:match("^::ffff:") ~= nil and private(ip:sub(8))
end

local function loopback(ip)
  return ip:match("^127%.") ~= nil or ip == "::1"
end

onair.on("publish", function(ev)
  local ip = ev.addr:match("^%[?(.-)%]?:%d+$") or ev.addr
  if loopback(ip) and onair.store.get("ip_filter.allow_loopback") == true then
    return
  end
  if private(ip) then
    onair.log.warn("refusing publish from private address " .. ip)
    onair.reject("publisher address " .. ip .. " is private; publish from a public address")
    return false
  end
end)
