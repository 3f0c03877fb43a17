package schema

import "github.com/redis/go-redis/v9"

// Maintenance scheduler scripts (package maintenance). KEYS[1] is SlotKey of
// the periodic type; ARGV[1] the slot's Unix milliseconds, ARGV[2] the
// marker's lifetime in ms (SlotMarkerTTL).
//
// The slot marker (entry.slotKey) is "<slot unix ms>:rolling" while the
// first firing of a slot removes the previous slot's task, then
// "<slot>:done".

// AdvanceSlot returns 1 when ARGV[1] is a newer slot than the marker's (the
// caller is the slot's first firing and now owns the rollover), 2 when
// another firing is rolling this slot over (wait for it), else 0.
var AdvanceSlot = redis.NewScript(`
local v = redis.call("GET", KEYS[1])
local cur, state = -1, "done"
if v then
  local sep = string.find(v, ":", 1, true)
  if sep then
    cur = tonumber(string.sub(v, 1, sep - 1)) or -1
    state = string.sub(v, sep + 1)
  end
end
local slot = tonumber(ARGV[1])
if slot > cur then
  redis.call("SET", KEYS[1], ARGV[1] .. ":rolling", "PX", ARGV[2])
  return 1
end
if slot == cur and state == "rolling" then
  return 2
end
return 0`)

// FinishSlot marks the rollover of slot ARGV[1] done, unless a newer slot
// took the marker meanwhile.
var FinishSlot = redis.NewScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] .. ":rolling" then
  redis.call("SET", KEYS[1], ARGV[1] .. ":done", "PX", ARGV[2])
end
return 0`)

// Gateway rate limit script (package gateway/ratelimit).

// RatePause sets KEYS[1] (RatePauseKey) with a lifetime of ARGV[1] ms unless it
// already lives at least that long.
var RatePause = redis.NewScript(`
local ttl = redis.call('PTTL', KEYS[1])
if ttl < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], '429', 'PX', ARGV[1])
  return 1
end
return 0
`)
