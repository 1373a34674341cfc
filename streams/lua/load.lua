#!lua flags=no-writes
-- loom load: read everything a batch can touch in one round trip.
-- ARGV: prefix, seen segment (key segment of the lane's processed markers), n_ids, n_profiles,
-- n_stocks, n_events, n_hashes, then the names in that order.
-- Identifier records point at profiles; those profiles are loaded too, following merge
-- redirects (field r) for at most 8 hops, and so are the records of every identifier a loaded
-- profile holds (its field i, a JSON list of keys), so that a merge can re-point them.
-- Identifier records are returned as {key, v, p, s}. Keys are built here, so this script needs a
-- standalone Redis (or a cluster where every Loom key hashes to one slot).
local prefix, seen_key = ARGV[1], ARGV[1] .. ':v1:' .. ARGV[2] .. ':'
local n_ids, n_prof, n_stock = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local n_ev, n_hash = tonumber(ARGV[6]), tonumber(ARGV[7])
local i = 8
local ids, profiles, stocks, seen, suppressed = {}, {}, {}, {}, {}
local wanted, order = {}, {}

local function want(pid)
  if not wanted[pid] then wanted[pid] = true; order[#order + 1] = pid end
end

local id_loaded = {}
local function load_id(key)
  if id_loaded[key] then return nil end
  id_loaded[key] = true
  local r = redis.call('HMGET', prefix .. ':v1:id:' .. key, 'v', 'p', 's')
  ids[#ids + 1] = {key, r[1], r[2], r[3]}
  return r
end

for _ = 1, n_ids do
  local r = load_id(ARGV[i])
  if r and r[2] then want(r[2]) end
  i = i + 1
end
for _ = 1, n_prof do want(ARGV[i]); i = i + 1 end
for _, pid in ipairs(order) do
  local cur = pid
  local r = redis.call('HMGET', prefix .. ':v1:profile:' .. cur, 'v', 's', 'r', 'i')
  local hops = 0
  while r[3] and hops < 8 do
    cur = r[3]
    r = redis.call('HMGET', prefix .. ':v1:profile:' .. cur, 'v', 's', 'r', 'i')
    hops = hops + 1
  end
  profiles[#profiles + 1] = {cur, r[1], r[2], r[3]}
  if r[4] then
    for _, key in ipairs(cjson.decode(r[4])) do load_id(key) end
  end
end
for _ = 1, n_stock do
  stocks[#stocks + 1] = redis.call('HMGET', prefix .. ':v1:stock:' .. ARGV[i], 'v', 's')
  i = i + 1
end
for _ = 1, n_ev do
  seen[#seen + 1] = redis.call('EXISTS', seen_key .. ARGV[i])
  i = i + 1
end
local skey = prefix .. ':v1:suppressed'
for _ = 1, n_hash do
  suppressed[#suppressed + 1] = redis.call('SISMEMBER', skey, ARGV[i])
  i = i + 1
end
return {ids, profiles, stocks, seen, suppressed}
