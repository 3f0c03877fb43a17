package schema

import "github.com/redis/go-redis/v9"

// Registry and event scripts, run by package events (Store). Each takes
// KEYS registry (RegistryKey), stream (EventsKey) of one project, except
// RegistryTouch (registry only).
//
// The scripts below touch only keys of one project (one hash tag), so they
// run on one cluster slot. The published copy of an event is built in the
// script from the stored JSON (which starts with `{` and has no id) and the
// entry id, so the stream and the channels see events in the same order.

// emit is shared by the scripts: append ARGV event JSON to KEYS[2], publish
// it with its id, record it as last_event. Returns the id.
const luaEmit = `
local function emit(json, now, maxlen, ch, allch)
  local id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', maxlen, '*', 'event', json)
  local pub = '{"id":"' .. id .. '",' .. string.sub(json, 2)
  redis.call('HSET', KEYS[1], 'last_event', pub, 'updated_at', now)
  redis.call('PUBLISH', ch, pub)
  redis.call('PUBLISH', allch, pub)
  return id
end
local function fill(json, sid)
  local i, j = string.find(json, '"sandbox_id":""', 1, true)
  if not i then return json end
  return string.sub(json, 1, i - 1) .. '"sandbox_id":' .. cjson.encode(sid) .. string.sub(json, j + 1)
end
`

// RegistryUpsert: KEYS registry, stream; ARGV ns, name, sandbox id, provider,
// now ms, created JSON, ready JSON, maxlen, channel, all channel, "1" to
// emit ready right after created for a new sandbox id.
var RegistryUpsert = redis.NewScript(luaEmit + `
local cur = redis.call('HMGET', KEYS[1], 'sandbox_id', 'status')
local now = ARGV[5]
if cur[1] ~= ARGV[3] then
  redis.call('HSET', KEYS[1], 'namespace', ARGV[1], 'name', ARGV[2], 'sandbox_id', ARGV[3],
    'provider', ARGV[4], 'status', 'ready', 'error', '', 'servers', '{}',
    'created_at', now, 'last_used', now, 'updated_at', now)
  redis.call('HDEL', KEYS[1], 'seen')
  local id = emit(ARGV[6], now, ARGV[8], ARGV[9], ARGV[10])
  if ARGV[11] == '1' then id = emit(ARGV[7], now, ARGV[8], ARGV[9], ARGV[10]) end
  return {id, ARGV[3]}
end
redis.call('HSET', KEYS[1], 'last_used', now)
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'provider', ARGV[4]) end
if cur[2] ~= 'ready' then
  redis.call('HSET', KEYS[1], 'status', 'ready', 'error', '')
  return {emit(ARGV[7], now, ARGV[8], ARGV[9], ARGV[10]), ARGV[3]}
end
return false
`)

// RegistryServer: KEYS registry, stream; ARGV sandbox id ("" = current),
// slug, observed state JSON, observed ms (0 = unknown), event JSON, now ms,
// maxlen, channel, all channel.
// Returns 0 absent, 1 no transition, or {entry id, sandbox id}.
var RegistryServer = redis.NewScript(luaEmit + `
local h = redis.call('HMGET', KEYS[1], 'sandbox_id', 'status', 'servers', 'seen')
if not h[1] then return 0 end
if ARGV[1] ~= '' and h[1] ~= ARGV[1] then return 1 end
if h[2] == 'destroyed' then return 1 end
local slug = ARGV[2]
local servers = {}
if h[3] and h[3] ~= '' then servers = cjson.decode(h[3]) end
local seen = {}
if h[4] and h[4] ~= '' then seen = cjson.decode(h[4]) end
local obs = cjson.decode(ARGV[3])
local obsms = tonumber(ARGV[4])
local cur = servers[slug]
local function s(v)
  if v == nil or v == cjson.null then return '' end
  return tostring(v)
end
local function absent(v, f)
  if v == nil or v == cjson.null then return true end
  return f ~= 'exit_code' and (v == '' or v == 0)
end
local rank = {installing = 0, starting = 1, restarting = 1, running = 2, ready = 3, stopped = 4, failed = 4}
local last = tonumber(seen[slug] or 0)
if cur and obsms > 0 and last > 0 then
  if obsms < last then return 1 end
  if obsms == last and (rank[obs.status] or 2) < (rank[cur.status] or 2) then return 1 end
end
local function noteSeen()
  if obsms > last then
    seen[slug] = obsms
    redis.call('HSET', KEYS[1], 'seen', cjson.encode(seen))
  end
end
if cur and s(cur.status) == s(obs.status) then
  local changed, filled = false, false
  for _, f in ipairs({'url', 'port', 'exit_code', 'error'}) do
    if absent(obs[f], f) then
      obs[f] = cur[f]
    elseif absent(cur[f], f) then
      filled = true
    elseif s(cur[f]) ~= s(obs[f]) and f ~= 'error' then
      changed = true
    end
  end
  if not changed then
    if filled then
      obs.updated_at = cur.updated_at
      servers[slug] = obs
      redis.call('HSET', KEYS[1], 'servers', cjson.encode(servers))
    end
    noteSeen()
    return 1
  end
end
servers[slug] = obs
redis.call('HSET', KEYS[1], 'servers', cjson.encode(servers))
noteSeen()
local json = ARGV[5]
if ARGV[1] == '' then json = fill(json, h[1]) end
return {emit(json, ARGV[6], ARGV[7], ARGV[8], ARGV[9]), h[1]}
`)

// RegistrySandbox: KEYS registry, stream; ARGV sandbox id ("" = current),
// status, error, event JSON, now ms, maxlen, channel, all channel.
var RegistrySandbox = redis.NewScript(luaEmit + `
local h = redis.call('HMGET', KEYS[1], 'sandbox_id', 'status')
if not h[1] then return 0 end
if ARGV[1] ~= '' and h[1] ~= ARGV[1] then return 1 end
if h[2] == ARGV[2] then return 1 end
redis.call('HSET', KEYS[1], 'status', ARGV[2], 'error', ARGV[3])
local json = ARGV[4]
if ARGV[1] == '' then json = fill(json, h[1]) end
return {emit(json, ARGV[5], ARGV[6], ARGV[7], ARGV[8]), h[1]}
`)

// RegistryRecheck: KEYS registry; ARGV Unix ms. Sets checked_at
// (FieldCheckedAt) of an existing entry; returns 1 if the entry exists.
var RegistryRecheck = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'checked_at', ARGV[1])
return 1
`)

// RegistryTouch: KEYS registry; ARGV now ms. Returns 1 if the entry exists.
var RegistryTouch = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'last_used', ARGV[1])
return 1
`)
