#!lua
-- loom commit: check, then write each part of a batch atomically.
-- ARGV[1] is a JSON plan; ARGV[2..] are the values it refers to by index (so large documents
-- are not JSON-escaped twice). Lists are flat (no table per item) and numbers Redis stores
-- come as strings (no tostring per item): both measurably cheaper for Redis (issue 17).
-- Plan:
--   r = the key prefix (P)
--   b = the number of processed-marker buckets (markers.lua)
--   g = {key, generation, token, lease, ...} or {}   the generation marker must hold this
--                                 value (state not lost), and each lease (the call's lanes'
--                                 P:v1:rebuild-lease:{lane}) must be absent or hold token (''
--                                 for a worker: a running loom rebuild of the lane refuses it)
--   o = {stream, field}           the outbox: one entry (never trimmed) whose field holds the
--                                 written parts' packed records, concatenated (streams.outbox)
--   p = {part, ...}               independent parts (disjoint keys and event ids), each:
--     e  = {key, version, ...}       each key's field v must equal version ('0' = key absent)
--     m  = seen segment              the scope's processed markers (markers.lua, ADR 0016)
--     s  = {bucket, {event_id, ...}, ...}  none may be marked processed; all are afterwards
--     t  = seconds                   how long the markers are kept at least (the TTL)
--     u  = {argi, ...}               hashes that must still be absent from the suppression hash
--     w  = {key, version, absent, n, field, argi, ... (n pairs), key, ...}  replace the hash
--                                    whole (n = 0: DEL); absent = 1: its expected version is
--                                    '0' (nothing to delete first)
--     ix = {set_key, add(1)|rem(0), member, ...}  (applied in order)
--     sa = {hash_key, {argi, argi, ...}}  HSET hash -> tombstone pairs (suppression)
--     x  = {stream, maxlen, n, field, value, ... (n pairs), stream, ...}  XADD MAXLEN ~
--                                    (maxlen '0': never trimmed); value: the text, or a
--                                    number: its argi (text that is not UTF-8)
--     c  = {hash, field, n, ...}     HINCRBY
--     o  = argi of its packed outbox records, or 0
-- Each part whose checks pass is written; a part that fails writes nothing, the others are
-- unaffected (the script runs atomically, so no other client sees a part half written).
-- Each scope with a part written: INCR of P:v1:commit-seq:{segment} (ADR 0021).
-- Returns {0, 'generation', key} or {0, 'rebuilding', lease} with nothing written, else {1, {reply, ...}}: one reply per
-- part, {1} (written), {0, 'conflict', key} or {0, 'duplicate', event_id, ...} (every
-- processed one: the store names the first in the part's order).
--MARKERS--
local plan = cjson.decode(ARGV[1])
local marker_sets = {}
local function markers(part)  -- one per segment: its layout is read once
  local m = marker_sets[part.m]
  if not m then
    m = MARKERS(plan.r, part.m, tonumber(part.t))
    marker_sets[part.m] = m
  end
  return m
end

if #plan.g > 0 then
  if redis.call('GET', plan.g[1]) ~= plan.g[2] then return {0, 'generation', plan.g[1]} end
  for j = 4, #plan.g do
    local holder = redis.call('GET', plan.g[j])
    if holder and holder ~= plan.g[3] then return {0, 'rebuilding', plan.g[j]} end
  end
end

local function inline(v)  -- a value in the plan itself, or (a number) its argi
  if type(v) == 'number' then return ARGV[v] end
  return v
end

local function first_conflict(e)  -- the first entity, in the plan's order, whose version moved
  for j = 1, #e, 2 do
    if (redis.call('HGET', e[j], 'v') or '0') ~= e[j + 1] then return {0, 'conflict', e[j]} end
  end
  return nil
end

local function check(part)
  -- versions: an HGET per entity expected to exist; the ones expected absent ('0', about half
  -- on the simulator mix) with one EXISTS per 500 (issue 17.2). Any miss: the entities again
  -- in order (first_conflict), so the reply names the same entity as a check in order would
  local e, absent = part.e, {}
  for j = 1, #e, 2 do
    if e[j + 1] == '0' then
      absent[#absent + 1] = e[j]
    elseif (redis.call('HGET', e[j], 'v') or '0') ~= e[j + 1] then
      return first_conflict(e)
    end
  end
  for j = 1, #absent, 500 do
    if redis.call('EXISTS', unpack(absent, j, math.min(j + 499, #absent))) > 0 then
      local failed = first_conflict(e)
      if failed then return failed end
      break  -- a key without a version field counts as absent, as in first_conflict
    end
  end
  for j = 1, #part.u, 500 do  -- one HMGET per 500 hashes
    local chunk = {}
    for k = j, math.min(j + 499, #part.u) do chunk[#chunk + 1] = ARGV[part.u[k]] end
    local found = redis.call('HMGET', part.sa[1], unpack(chunk))
    for k = 1, #chunk do
      if found[k] then return {0, 'conflict', 'suppressed:' .. chunk[k]} end
    end
  end
  local hits = markers(part).found(part.s)
  if next(hits) then
    local reply = {0, 'duplicate'}
    for id in pairs(hits) do reply[#reply + 1] = id end
    return reply
  end
  return nil
end

local function apply(part)
  local w, j = part.w, 1
  while j <= #w do
    local key, n = w[j], w[j + 3]
    if w[j + 2] ~= 1 then redis.call('DEL', key) end  -- absent = 1: checked absent above
    if n == 3 then  -- the usual shapes without a table: fewer Lua operations (issue 17)
      redis.call('HSET', key, 'v', w[j + 1], w[j + 4], ARGV[w[j + 5]], w[j + 6], ARGV[w[j + 7]],
        w[j + 8], ARGV[w[j + 9]])
    elseif n == 2 then
      redis.call('HSET', key, 'v', w[j + 1], w[j + 4], ARGV[w[j + 5]], w[j + 6], ARGV[w[j + 7]])
    elseif n > 0 then
      local args = {key, 'v', w[j + 1]}
      for k = j + 4, j + 3 + 2 * n, 2 do
        args[#args + 1] = w[k]
        args[#args + 1] = ARGV[w[k + 1]]
      end
      redis.call('HSET', unpack(args))
    end
    j = j + 4 + 2 * n
  end
  -- a run of the same set and operation is one SADD/SREM (up to 500 members): the same
  -- effect in the same order, a command per run instead of per member (issue 17)
  local ix, run, add = part.ix, {}, nil
  local function flush()  -- run = {set_key, member, ...}
    if add == 1 then redis.call('SADD', unpack(run)) else redis.call('SREM', unpack(run)) end
    run = {}
  end
  for k = 1, #ix, 3 do
    if #run > 0 and (ix[k] ~= run[1] or ix[k + 1] ~= add or #run > 500) then flush() end
    if #run == 0 then run[1], add = ix[k], ix[k + 1] end
    run[#run + 1] = ix[k + 2]
  end
  if #run > 0 then flush() end
  markers(part).mark(part.s, plan.b)
  if #part.sa[2] > 0 then
    local pairs_ = {}
    for _, a in ipairs(part.sa[2]) do pairs_[#pairs_ + 1] = ARGV[a] end
    redis.call('HSET', part.sa[1], unpack(pairs_))
  end
  local x
  x, j = part.x, 1
  while j <= #x do
    local n = x[j + 2]
    if n == 3 and x[j + 1] ~= '0' then  -- a change stream's entry (id, op, version|into)
      redis.call('XADD', x[j], 'MAXLEN', '~', x[j + 1], '*', x[j + 3], inline(x[j + 4]),
        x[j + 5], inline(x[j + 6]), x[j + 7], inline(x[j + 8]))
    else
      local args = {x[j]}
      if x[j + 1] ~= '0' then
        args[2] = 'MAXLEN'; args[3] = '~'; args[4] = x[j + 1]
      end
      args[#args + 1] = '*'
      for k = j + 3, j + 2 + 2 * n, 2 do
        args[#args + 1] = x[k]
        args[#args + 1] = inline(x[k + 1])
      end
      redis.call('XADD', unpack(args))
    end
    j = j + 3 + 2 * n
  end
  local c = part.c
  for k = 1, #c, 3 do redis.call('HINCRBY', c[k], c[k + 1], c[k + 2]) end
end

local replies, records, written = {}, {}, {}
for n, part in ipairs(plan.p) do
  local failed = check(part)
  if failed then
    replies[n] = failed
  else
    apply(part)
    if part.o > 0 then records[#records + 1] = ARGV[part.o] end
    if not written[part.m] then written[#written + 1] = part.m; written[part.m] = true end
    replies[n] = {1}
  end
end
if #records > 0 then
  redis.call('XADD', plan.o[1], '*', plan.o[2], table.concat(records))
end
-- every commit that writes a scope's part INCRs the scope's commit sequence, which the commit
-- without Lua (streams.watch_commit, ADR 0021) WATCHes: both commits can run side by side
for _, segment in ipairs(written) do
  redis.call('INCR', plan.r .. ':v1:commit-seq:' .. segment)
end
return {1, replies}
