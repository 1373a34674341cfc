-- loom processed markers (ADR 0016), included by load.lua and commit.lua where they say
-- MARKERS (streams.redis_store puts this chunk there).
-- An event id processed in scope `segment` is a field ('1') of the hash
--   P:v1:markers:{segment}:{generation}:{bucket}
-- where bucket is chosen by the caller (streams.redis_store.marker_bucket) and generation =
-- floor(Redis time / width). `width` is fixed per segment by the first commit that writes a
-- marker (field `width` of P:v1:markers-layout:{segment}: a quarter of the TTL setting of
-- that moment), so that a later change of the TTL does not move the generations: a lookup
-- reads the generations current - k .. current, k = ceil(ttl / width). A marker is so found
-- for at least ttl and at most ttl + width after it was written (a quarter of a TTL: Redis
-- holds 1 to 1.25 TTLs of markers, where one generation per TTL would hold 1 to 2). Of the
-- k + 1 generations' hashes only those that exist are read (asked once per script call: most
-- of them are absent while a lane runs, and a commit of many parts looks up every part).
-- A commit unlinks generation current - k - 1 (UNLINK frees a large hash in a background
-- thread; an expiring one would be freed by the main thread, unless lazyfree-lazy-expire),
-- and a generation's hashes also expire (EXPIREAT, set once) at the end of generation + k + 2,
-- for a lane that stopped committing; both once per script call, however many parts.
-- Hand-over from layout 1 (one key P:v1:{segment}:{event_id} per event, with its own expiry):
-- those keys are also looked up until the TTL + HANDOVER_S after the first layout-2 commit
-- (field `since`; 0 when the lane's first layout-2 worker found no layout-1 marker,
-- streams.redis_store): past that, every key an older worker wrote has expired.
local HANDOVER_S = 3600
local GENERATIONS_PER_TTL = 4
-- A generation's hash is created in Redis's hashtable encoding: a first HSET with the field ''
-- (never an event id) holding a value longer than hash-max-listpack-value (64 by default)
-- converts it before its ids go in, then HDEL '' (a hash never converts back). Created as a
-- listpack, every lookup and insert scans it until 512 fields: on a fresh prefix ~8 % of
-- Redis's instructions for the profiles lane (issue 17.2), once per generation in production.
local HASHTABLE = string.rep('-', 65)
local function MARKERS(prefix, segment, ttl)
  local now = tonumber(redis.call('TIME')[1])
  local layout_key = prefix .. ':v1:markers-layout:' .. segment
  local layout = redis.call('HMGET', layout_key, 'width', 'since')
  local stored = tonumber(layout[1])
  local width = stored or math.max(1, math.ceil(ttl / GENERATIONS_PER_TTL))
  local since = tonumber(layout[2])
  local gen = math.floor(now / width)
  local k = math.ceil(ttl / width)
  local root = prefix .. ':v1:markers:' .. segment .. ':'
  local legacy_root = prefix .. ':v1:' .. segment .. ':'
  local legacy = (not since) or now < since + ttl + HANDOVER_S
  local present, expiring, unlinked = {}, {}, false
  local function exists(key)  -- asked of Redis once per key and script call
    local p = present[key]
    if p == nil then
      p = redis.call('EXISTS', key) == 1
      present[key] = p
    end
    return p
  end
  local m = {}
  -- groups: {bucket, {id, ...}, bucket, {id, ...}, ...}; returns the processed: {id = true}
  function m.found(groups)
    local hits = {}
    for b = 1, #groups, 2 do
      local bucket, ids = groups[b], groups[b + 1]
      for j = 1, #ids, 500 do
        local chunk = {unpack(ids, j, math.min(j + 499, #ids))}
        for g = gen, gen - k, -1 do
          local key = root .. g .. ':' .. bucket
          if exists(key) then
            local got = redis.call('HMGET', key, unpack(chunk))
            for x = 1, #chunk do
              if got[x] then hits[chunk[x]] = true end
            end
          end
        end
        if legacy then  -- one EXISTS per chunk; per id only when some exist
          local keys = {}
          for x = 1, #chunk do keys[x] = legacy_root .. chunk[x] end
          if redis.call('EXISTS', unpack(keys)) > 0 then
            for x = 1, #chunk do
              if redis.call('EXISTS', keys[x]) == 1 then hits[chunk[x]] = true end
            end
          end
        end
      end
    end
    return hits
  end
  -- marks the ids of groups processed in the current generation; unlinks the generation no
  -- lookup reads any more (n_buckets hashes: freed off the main thread, however large)
  function m.mark(groups, n_buckets)
    if not stored then
      redis.call('HSET', layout_key, 'width', width)
      stored = width
    end
    if not since then
      redis.call('HSET', layout_key, 'since', now)
      since = now
    end
    if not unlinked then
      local stale = {}
      for b = 0, n_buckets - 1 do stale[#stale + 1] = root .. (gen - k - 1) .. ':' .. b end
      redis.call('UNLINK', unpack(stale))
      unlinked = true
    end
    local expire_at = (gen + k + 2) * width  -- a backstop for a lane that stops committing
    for b = 1, #groups, 2 do
      local key, ids = root .. gen .. ':' .. groups[b], groups[b + 1]
      local new = #ids > 0 and not exists(key)
      for j = 1, #ids, 500 do
        local args = {key}
        if new and j == 1 then args[2], args[3] = '', HASHTABLE end
        for x = j, math.min(j + 499, #ids) do
          args[#args + 1] = ids[x]
          args[#args + 1] = '1'
        end
        redis.call('HSET', unpack(args))
      end
      if new then redis.call('HDEL', key, '') end
      if #ids > 0 then
        present[key] = true
        if not expiring[key] then
          redis.call('EXPIREAT', key, expire_at, 'NX')
          expiring[key] = true
        end
      end
    end
  end
  return m
end
