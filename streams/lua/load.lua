#!lua flags=no-writes
-- loom load: read everything a batch can touch in one round trip.
-- ARGV: prefix, seen segment (key segment of the lane's processed markers), max_profiles,
-- n_ids, n_profiles, n_versions, n_stocks, n_events, n_hashes, the markers' TTL (s),
-- n_buckets, then the names in that order, the event ids grouped by marker bucket (ADR 0016)
-- and last n_buckets pairs (bucket, number of event ids in it) in the order of the groups.
--
-- The identity evidence is walked breadth first, exactly like resolvers.store.InMemoryStore:
-- identifier records (fields v, p, h, s) lead to profiles (p: the one it links to; h: JSON
-- list of the profiles holding atoms that carry it, sorted: the first 32 are followed); a
-- profile (fields v, s, r, i) leads to its redirect target (r) or to the records of the
-- identifier keys its atoms carry (i, a JSON list); the tombstones of suppressed hashes add
-- the profiles holding atoms with their ghost (field h); at most max_profiles profiles are
-- visited (then the walk reports truncated).
-- The "versions" profile ids are read alone (v and r; not followed, not counted), after the
-- walk, unless the walk visited them.
-- Processed markers (ADR 0016): an event id is a field of the hash
-- P:v1:markers:{segment}:{generation}:{bucket}; the current and the previous generation are
-- looked up (markers.lua), and during the hand-over the layout-1 keys too.
-- Returns {ids, profiles, stocks, seen, suppressed, truncated}, flat (no table per entity:
-- each nested table costs Redis a table and its reply type checks): ids as key, v, p, h, s
-- per record, profiles as pid, v, s, r, i, stocks as v, s; suppressed as the tombstone JSON
-- of each hash (false if none).
-- Keys are built here, so this script needs a standalone Redis.
--MARKERS--
local prefix, segment = ARGV[1], ARGV[2]
local max_profiles = tonumber(ARGV[3])
local max_holders = 32  -- resolvers.store.HOLDERS_WALKED
local n_ids, n_prof, n_vers = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local n_stock, n_ev, n_hash = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local ttl, n_buckets = tonumber(ARGV[10]), tonumber(ARGV[11])
local i = 12
local ids, profiles, stocks, seen, suppressed = {}, {}, {}, {}, {}
local id_queue, pid_queue = {}, {}
local id_head, pid_head = 1, 1
local seen_ids, seen_pids, n_pids = {}, {}, 0
local truncated = 0

for _ = 1, n_ids do id_queue[#id_queue + 1] = ARGV[i]; i = i + 1 end
for _ = 1, n_prof do pid_queue[#pid_queue + 1] = ARGV[i]; i = i + 1 end
local versions_at = i
i = i + n_vers
local stocks_at = i
i = i + n_stock
local events_at = i
i = i + n_ev
-- tombstones first: the profiles holding atoms with an erased identifier's ghost join the walk
local skey = prefix .. ':v1:suppressed'
for j = i, i + n_hash - 1, 500 do  -- one HMGET per 500 hashes (issue 17.2)
  local tombs = redis.call('HMGET', skey, unpack(ARGV, j, math.min(j + 499, i + n_hash - 1)))
  for k = 1, #tombs do
    local tomb = tombs[k]
    suppressed[#suppressed + 1] = tomb
    if tomb then
      local holders = cjson.decode(tomb)['h']
      if holders then
        for _, pid in ipairs(holders) do pid_queue[#pid_queue + 1] = pid end
      end
    end
  end
end
i = i + n_hash

while id_head <= #id_queue or pid_head <= #pid_queue do
  while id_head <= #id_queue do
    local key = id_queue[id_head]
    id_head = id_head + 1
    if not seen_ids[key] then
      seen_ids[key] = true
      local r = redis.call('HMGET', prefix .. ':v1:id:' .. key, 'v', 'p', 'h', 's')
      local n = #ids
      ids[n + 1], ids[n + 2], ids[n + 3], ids[n + 4], ids[n + 5] = key, r[1], r[2], r[3], r[4]
      if r[2] then pid_queue[#pid_queue + 1] = r[2] end
      if r[3] then  -- the first max_holders holders (the record keeps up to 256)
        for k, pid in ipairs(cjson.decode(r[3])) do
          if k > max_holders then break end
          pid_queue[#pid_queue + 1] = pid
        end
      end
    end
  end
  while pid_head <= #pid_queue do
    local pid = pid_queue[pid_head]
    pid_head = pid_head + 1
    if not seen_pids[pid] then
      if n_pids >= max_profiles then
        truncated = 1
        pid_head = #pid_queue + 1
        break
      end
      seen_pids[pid] = true
      n_pids = n_pids + 1
      local r = redis.call('HMGET', prefix .. ':v1:profile:' .. pid, 'v', 's', 'r', 'i')
      local n = #profiles
      profiles[n + 1], profiles[n + 2], profiles[n + 3] = pid, r[1], r[2]
      profiles[n + 4], profiles[n + 5] = r[3], r[4]
      if r[3] then
        pid_queue[#pid_queue + 1] = r[3]
      elseif r[4] then
        for _, key in ipairs(cjson.decode(r[4])) do id_queue[#id_queue + 1] = key end
      end
    end
  end
end
i = versions_at
for _ = 1, n_vers do
  local pid = ARGV[i]
  i = i + 1
  if not seen_pids[pid] then
    seen_pids[pid] = true
    local r = redis.call('HMGET', prefix .. ':v1:profile:' .. pid, 'v', 'r')
    local n = #profiles
    profiles[n + 1], profiles[n + 2], profiles[n + 3] = pid, r[1], false
    profiles[n + 4], profiles[n + 5] = r[2], false
  end
end
i = stocks_at
for _ = 1, n_stock do
  local r = redis.call('HMGET', prefix .. ':v1:stock:' .. ARGV[i], 'v', 's')
  stocks[#stocks + 1], stocks[#stocks + 2] = r[1], r[2]
  i = i + 1
end
-- the event ids, per bucket: one HMGET per generation
local markers = MARKERS(prefix, segment, ttl)
local groups, j = {}, events_at
for b = 0, n_buckets - 1 do
  local at = events_at + n_ev + n_hash + 2 * b
  local n = tonumber(ARGV[at + 1])
  groups[#groups + 1] = ARGV[at]
  groups[#groups + 1] = {unpack(ARGV, j, j + n - 1)}
  j = j + n
end
local hits = markers.found(groups)
for k = events_at, events_at + n_ev - 1 do
  seen[#seen + 1] = hits[ARGV[k]] and 1 or 0
end
return {ids, profiles, stocks, seen, suppressed, truncated}
