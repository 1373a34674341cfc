#!lua
-- loom commit: check, then write each part of a batch atomically.
-- ARGV[1] is a JSON plan; ARGV[2..] are the values it refers to by index (so large documents
-- are not JSON-escaped twice). Plan:
--   g = {key, generation} or {}   the generation marker must hold this value (state not lost)
--   o = {stream, field}           the outbox: one entry (never trimmed) whose field holds the
--                                 written parts' packed records, concatenated (streams.outbox)
--   p = {part, ...}               independent parts (disjoint keys and event ids), each:
--     e  = {{key, version}, ...}     each key's field v must equal version (0 = key absent)
--     s  = {seen_key, ...}           none may exist; all are SET with expiry t afterwards
--     t  = seconds                   expiry of the seen markers
--     u  = {argi, ...}               hashes that must still be absent from the suppression hash
--     w  = {{key, version, {field, argi, ...}, absent}, ...}  replace the hash whole (no
--                                    fields = DEL); absent = 1: its expected version is 0
--                                    (nothing to delete first)
--     ix = {{set_key, add(1)|rem(0), member_argi}, ...}
--     sa = {hash_key, {argi, argi, ...}}  HSET hash -> tombstone pairs (suppression)
--     x  = {{stream, maxlen, {field, argi, ...}}, ...}  XADD MAXLEN ~ (maxlen 0: never trimmed)
--     c  = {{hash, field, n}, ...}   HINCRBY
--     o  = argi of its packed outbox records, or 0
-- Each part whose checks pass is written; a part that fails writes nothing, the others are
-- unaffected (the script runs atomically, so no other client sees a part half written).
-- Returns {0, 'generation', key} with nothing written, else {1, {reply, ...}}: one reply per
-- part, {1} (written), {0, 'conflict', key} or {0, 'duplicate', key}.
local plan = cjson.decode(ARGV[1])

if #plan.g == 2 and redis.call('GET', plan.g[1]) ~= plan.g[2] then
  return {0, 'generation', plan.g[1]}
end

local function check(part)
  for _, ex in ipairs(part.e) do
    local v = redis.call('HGET', ex[1], 'v')
    if (v or '0') ~= tostring(ex[2]) then return {0, 'conflict', ex[1]} end
  end
  for j = 1, #part.u, 500 do  -- one HMGET per 500 hashes
    local chunk = {}
    for k = j, math.min(j + 499, #part.u) do chunk[#chunk + 1] = ARGV[part.u[k]] end
    local found = redis.call('HMGET', part.sa[1], unpack(chunk))
    for k = 1, #chunk do
      if found[k] then return {0, 'conflict', 'suppressed:' .. chunk[k]} end
    end
  end
  for j = 1, #part.s, 500 do  -- one EXISTS per 500 ids; per id only to name a duplicate
    local chunk = {unpack(part.s, j, math.min(j + 499, #part.s))}
    if redis.call('EXISTS', unpack(chunk)) > 0 then
      for _, k in ipairs(chunk) do
        if redis.call('EXISTS', k) == 1 then return {0, 'duplicate', k} end
      end
    end
  end
  return nil
end

local function apply(part)
  for _, w in ipairs(part.w) do
    if w[4] ~= 1 then redis.call('DEL', w[1]) end  -- w[4] = 1: checked absent above
    local f = w[3]
    if #f > 0 then
      local args = {'v', tostring(w[2])}
      for j = 1, #f, 2 do
        args[#args + 1] = f[j]
        args[#args + 1] = ARGV[f[j + 1]]
      end
      redis.call('HSET', w[1], unpack(args))
    end
  end
  for _, op in ipairs(part.ix) do
    if op[2] == 1 then redis.call('SADD', op[1], ARGV[op[3]])
    else redis.call('SREM', op[1], ARGV[op[3]]) end
  end
  for _, k in ipairs(part.s) do redis.call('SET', k, '1', 'EX', part.t) end
  if #part.sa[2] > 0 then
    local pairs_ = {}
    for _, a in ipairs(part.sa[2]) do pairs_[#pairs_ + 1] = ARGV[a] end
    redis.call('HSET', part.sa[1], unpack(pairs_))
  end
  for _, x in ipairs(part.x) do
    local args = {x[1]}
    if x[2] > 0 then
      args[#args + 1] = 'MAXLEN'; args[#args + 1] = '~'; args[#args + 1] = tostring(x[2])
    end
    args[#args + 1] = '*'
    local f = x[3]
    for j = 1, #f, 2 do
      args[#args + 1] = f[j]
      args[#args + 1] = ARGV[f[j + 1]]
    end
    redis.call('XADD', unpack(args))
  end
  for _, c in ipairs(part.c) do redis.call('HINCRBY', c[1], c[2], c[3]) end
end

local replies, records = {}, {}
for n, part in ipairs(plan.p) do
  local failed = check(part)
  if failed then
    replies[n] = failed
  else
    apply(part)
    if part.o > 0 then records[#records + 1] = ARGV[part.o] end
    replies[n] = {1}
  end
end
if #records > 0 then
  redis.call('XADD', plan.o[1], '*', plan.o[2], table.concat(records))
end
return {1, replies}
