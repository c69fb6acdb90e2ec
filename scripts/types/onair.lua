---@meta
-- LuaCATS annotations for onair's Lua API (lua-language-server). Not loaded by onair.
-- Full reference: docs/lua-api.md.

---@class onair.Event
---@field event "publish"|"unpublish"|"stall"|"resume"|"ingest-stats"|"switched"|"destination-up"|"destination-down"|"destination-retry"
---@field channel string the channel's id ("default" without [[channel]] tables)
---@field session? integer publisher session id
---@field key? string stream key, redacted
---@field account? string streamer account of the key (publish; nil for a key from the config)
---@field addr? string publisher address ip:port (publish)
---@field reason? string why (unpublish, switched)
---@field on_air? boolean the session feeds the output's live source
---@field kbps? integer incoming kbit/s over the last second (ingest-stats)
---@field stalled? boolean (ingest-stats)
---@field silent_ms? integer ms without media (stall)
---@field stalled_ms? integer how long the stall lasted, ms (resume)
---@field from? "live"|"fallback" (switched)
---@field to? "live"|"fallback" (switched)
---@field name? string destination name (destination-*)
---@field url? string destination URL, redacted (destination-up)
---@field attempt? integer connection attempt (destination-up, destination-retry)
---@field error? string (destination-down)
---@field delay_ms? integer (destination-retry)

---@class onair.SwitchOpts
---@field media? string fallback media path to use first
---@field session? integer the publish session to put on air (with "live")
---@field reason? string logged and sent in the switched event

---@class onair.Request
---@field method string
---@field path string
---@field params table<string, string>
---@field query table<string, string>
---@field headers table<string, string> lower-case names
---@field body string
---@field json? any decoded body when it is JSON

---@class onair.Response
---@field status? integer default 200
---@field json? any
---@field html? string
---@field body? string
---@field headers? table<string, string> Set-Cookie, CSP, Access-Control-* and onair's other security headers are dropped

---@class onair.RouteOpts
---@field auth? boolean default true: a login or the admin token is needed; false makes the route public (not allowed under /api/)

---@class onair.HttpOpts
---@field url string http:// or https://
---@field method? string default "GET"
---@field headers? table<string, string>
---@field body? string
---@field json? table sent as a JSON body
---@field timeout_ms? integer default 5000
---@field decode_json? boolean decode the response body into .json

---@class onair.HttpResponse
---@field status integer
---@field headers table<string, string>
---@field body string
---@field json? any

---@class onair.Destination
---@field name string
---@field url string redacted
---@field state "connecting"|"up"|"retrying"|"disabled"
---@field uptime_s? number
---@field attempts integer
---@field last_error? string
---@field bytes_sent integer

onair = {}

---Subscribe to an event. Return false from the handler to stop later handlers.
---@param name string
---@param handler fun(ev: onair.Event): boolean?
function onair.on(name, handler) end

---Put a source on air: "live" cuts on the publisher's next keyframe.
---@param source "live"|"fallback"
---@param opts? onair.SwitchOpts
function onair.switch(source, opts) end

---Refuse the publish being handled (publish handlers only).
---@param reason string
function onair.reject(reason) end

---Disconnect a publisher.
---@param session integer
---@param reason? string
function onair.kick(session, reason) end

---Replace the fallback media without switching; nil restores the slate.
---@param path? string
function onair.set_fallback(path) end

onair.destinations = {}
---@return onair.Destination[]
function onair.destinations.list() end
---@param name string
---@param url string rtmp:// or rtmps:// with the stream key
function onair.destinations.add(name, url) end
---@param name string
function onair.destinations.remove(name) end
---@param name string
function onair.destinations.enable(name) end
---@param name string
function onair.destinations.disable(name) end

---The same data as GET /api/status, its top-level fields for the channel in scope (a handle's,
---the event's, else the primary channel).
---@return table
function onair.status() end

---Every channel, as GET /api/channels lists them.
---@return table[]
function onair.channels() end

---@class onair.Channel
---@field id string
---@field switch fun(self: onair.Channel, source: "live"|"fallback", opts?: onair.SwitchOpts)
---@field set_fallback fun(self: onair.Channel, path?: string)
---@field kick fun(self: onair.Channel, session: integer, reason?: string)
---@field reject fun(self: onair.Channel, reason: string)
---@field status fun(self: onair.Channel): table
---@field destinations table the onair.destinations calls, for this channel
---@field overlay table the onair.overlay calls, for this channel
---@field start fun(self: onair.Channel)
---@field stop fun(self: onair.Channel)
---@field delete fun(self: onair.Channel)

---A handle on channel `id`; raises for an unknown id.
---@param id string
---@return onair.Channel
function onair.channel(id) end

---Creates a run-time channel (kept in the database) and starts it unless start = false.
---@param spec {id: string, name?: string, keys?: string[], fallback_media?: string, output?: table, destinations?: {name: string, url: string, enabled?: boolean}[], start?: boolean}
---@return table the channel as GET /api/channels/ID shows it, plus stream_keys
function onair.channel_create(spec) end

---Milliseconds since the Unix epoch.
---@return integer
function onair.now() end

---Marks t (or a new table) as a list: JSON `[]` even when empty.
---@param t? table
---@return table
function onair.array(t) end

---Call fn once after ms milliseconds.
---@param ms number
---@param fn fun()
---@return integer id
function onair.after(ms, fn) end

---Call fn every ms milliseconds (minimum 10).
---@param ms number
---@param fn fun()
---@return integer id
function onair.every(ms, fn) end

---Stop a timer.
---@param id integer
---@return boolean was_pending
function onair.cancel(id) end

onair.http = {}
---Start an HTTP request; callback(response, err) runs later.
---@param opts onair.HttpOpts
---@param callback fun(response: onair.HttpResponse?, err: string?)
---@return integer id
function onair.http.request(opts, callback) end

onair.store = {}
---@param key string
---@return any
function onair.store.get(key) end
---@param key string
---@param value any JSON-able; nil deletes
function onair.store.set(key, value) end
---@param key string
function onair.store.delete(key) end

onair.log = {}
---@param msg string
function onair.log.info(msg) end
---@param msg string
function onair.log.warn(msg) end
---@param msg string
function onair.log.error(msg) end

---Serve an HTTP route while this script is loaded (declare at load time). It needs a login or
---the admin token unless `opts.auth` is false. Every answer is sandboxed
---(`Content-Security-Policy: sandbox allow-scripts allow-forms`); a public one also carries
---`Access-Control-Allow-Origin: *`.
---@param method "GET"|"POST"|"PUT"|"PATCH"|"DELETE"
---@param path string e.g. "/queue/:id"
---@param handler fun(req: onair.Request): onair.Response
---@param opts? onair.RouteOpts
function onair.route(method, path, handler, opts) end

onair.overlay = {}

---@class onair.LayerOpts
---@field plugin? string overlay plugin name (file name without .wasm)
---@field data? table sent to the plugin as JSON
---@field png? string PNG file path
---@field x? integer output pixels, default 0
---@field y? integer
---@field width? integer 0 = natural size
---@field height? integer
---@field z? integer higher on top
---@field live_only? boolean

---Show or update an overlay layer (plugin or PNG).
---@param name string
---@param opts onair.LayerOpts
function onair.overlay.set(name, opts) end

---@class onair.TextOpts: onair.LayerOpts
---@field size? integer font size in pixels, default 32
---@field font? string TrueType/OpenType file, default DejaVu Sans Bold
---@field color? string|integer "#RRGGBB", "#RRGGBBAA" or 0xRRGGBBAA

---Show or update a text layer.
---@param name string
---@param text string
---@param opts? onair.TextOpts
function onair.overlay.text(name, text, opts) end

---Remove an overlay layer.
---@param name string
function onair.overlay.hide(name) end

---@class onair.ObsResponse
---@field ok boolean requestStatus.result
---@field code integer requestStatus.code (100: success)
---@field comment? string
---@field data? table responseData

---@class onair.Obs
---@field request fun(self: onair.Obs, type: string, data?: table, callback?: fun(r: onair.ObsResponse?, err: string?)): integer

onair.obs = {}

---Connects to OBS over obs-websocket v5; reconnects by itself.
---@param opts {host?: string, port?: integer, password?: string}
---@return onair.Obs
function onair.obs.connect(opts) end
