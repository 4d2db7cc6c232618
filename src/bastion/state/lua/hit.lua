-- Bastion: every counter of one request, checked and counted atomically in one call.
-- The arithmetic mirrors bastion/state/strategies.py (the definitions; tests run both).
--
-- KEYS: two per op: the counter key, then the cooldown key ("" slot is the literal "-").
-- ARGV[1]: now (epoch seconds, from the caller's clock). Then 7 per op:
--   algo (1 sliding, 2 token bucket, 3 fixed, 4 distinct, 5 cooldown only),
--   limit, window (s), cost, member, cooldown (s), consume (0/1).
-- Returns one string: per op "exceeded,count,remaining,reset,cooling,newly", joined by ";".

local now = tonumber(ARGV[1])
local out = {}
local nops = #KEYS / 2

-- Full precision where it matters (timestamps); plain numbers (14 digits) elsewhere.
local function fmt(x)
  return string.format("%.17g", x)
end

for i = 1, nops do
  local key = KEYS[2 * i - 1]
  local bkey = KEYS[2 * i]
  local a = 1 + (i - 1) * 7
  local algo = tonumber(ARGV[a + 1])
  local limit = tonumber(ARGV[a + 2])
  local w = tonumber(ARGV[a + 3])
  local cost = tonumber(ARGV[a + 4])
  local member = ARGV[a + 5]
  local cooldown = tonumber(ARGV[a + 6])
  local consume = ARGV[a + 7] == "1"
  local cooling = 0
  if bkey ~= "-" then
    -- The value is the end of the cooldown on the callers' clock; PX only bounds memory.
    local untl = tonumber(redis.call("GET", bkey))
    if untl and untl > now then cooling = untl - now end
  end
  local exceeded, count, remaining, reset, newly = false, 0, limit, 0, false
  if cooling > 0 then
    exceeded, count, remaining, reset = true, limit, 0, cooling
  elseif algo == 5 then
    exceeded, count, remaining, reset = false, 0, limit, 0
  elseif algo == 1 or algo == 3 then
    local idx = math.floor(now / w)
    local elapsed = now - idx * w
    -- State: one string "window-index prev cur" set with its expiry in the same call.
    local st = redis.call("GET", key)
    local si, sp, sc
    if st then si, sp, sc = string.match(st, "^(%S+) (%S+) (%S+)$") end
    si = tonumber(si)
    local prev, cur = 0, 0
    if si == idx then
      prev, cur = tonumber(sp) or 0, tonumber(sc) or 0
    elseif si == idx - 1 then
      prev = tonumber(sc) or 0
    end
    if algo == 3 then prev = 0 end
    local est = prev * (1 - elapsed / w) + cur
    exceeded = est + cost > limit
    if (not exceeded) or consume then
      cur = cur + cost
      est = est + cost
    end
    if exceeded and algo == 1 then
      local room = limit - cur - cost
      if room >= 0 and prev > 0 then
        reset = math.max(0, w * (1 - room / prev) - elapsed)
      elseif cur <= 0 then
        reset = w - elapsed
      else
        local frac = 1 - (limit - cost) / cur
        reset = (w - elapsed) + math.max(0, w * math.min(1, frac))
      end
    else
      reset = w - elapsed
    end
    count, remaining = est, math.max(0, limit - est)
    redis.call("SET", key, idx .. " " .. prev .. " " .. cur, "PX", math.ceil((algo == 1 and 2 or 1) * w * 1000))
  elseif algo == 2 then
    local rate = limit / w
    local st = redis.call("GET", key)
    local tokens = limit
    if st then
      local t, ts = string.match(st, "^(%S+) (%S+)$")
      if t then tokens = math.min(limit, tonumber(t) + math.max(0, now - tonumber(ts)) * rate) end
    end
    exceeded = tokens < cost
    if not exceeded then tokens = tokens - cost end
    if exceeded then reset = (cost - tokens) / rate else reset = (limit - tokens) / rate end
    count, remaining = limit - tokens, math.max(0, tokens)
    redis.call("SET", key, fmt(tokens) .. " " .. fmt(now), "PX", math.ceil(w * 1000))
  elseif algo == 4 then
    redis.call("ZREMRANGEBYSCORE", key, "-inf", fmt(now - w))
    local n = redis.call("ZCARD", key)
    if redis.call("ZSCORE", key, member) then
      redis.call("ZADD", key, fmt(now), member)
      exceeded = n > limit
    else
      exceeded = n + 1 > limit
      if (not exceeded) or consume then
        redis.call("ZADD", key, fmt(now), member)
        n = n + 1
        local cap = math.floor(limit) + 1
        if n > cap then
          redis.call("ZREMRANGEBYRANK", key, 0, n - cap - 1)
          n = cap
        end
      end
    end
    local oldest = redis.call("ZRANGE", key, 0, 0, "WITHSCORES")
    local t0 = now
    if oldest[2] then t0 = tonumber(oldest[2]) end
    count, remaining, reset = n, math.max(0, limit - n), math.max(0, t0 + w - now)
    redis.call("PEXPIRE", key, math.ceil(w * 1000))
  end
  if exceeded and cooling == 0 and cooldown > 0 and bkey ~= "-" then
    redis.call("SET", bkey, fmt(now + cooldown), "PX", math.ceil(cooldown * 1000) + 1000)
    cooling, newly = cooldown, true
    reset = math.max(reset, cooldown)
  end
  out[i] = (exceeded and "1" or "0") .. "," .. count .. "," .. remaining .. "," .. reset
    .. "," .. cooling .. "," .. (newly and "1" or "0")
end
return table.concat(out, ";")
