"""The Lua scripts that make delivery exactly-once and fence a stream's writes to its lease holder.

`DELIVER` (one call per alert event): dedupe by event id, `XADD` to the durable log, `PUBLISH` on the channels,
keep each alert's history and each stream's open alerts; in cluster mode reject (`FENCED`) an event made under
a lease a newer owner has since claimed, drop (`CLOSED`) an update for an alert no longer open, and close
(`LATE`) an alert a previous owner opened but delivered only after the takeover. `FENCED_STATE`: a stream's
state hash written only by the holder of its lease.
"""

DELIVER = """
local late = false
if ARGV[8] ~= '' then
  local token = tonumber(ARGV[8])
  local current = tonumber(redis.call('GET', KEYS[4]) or '0')
  if token < current then
    local taken = tonumber(redis.call('HGET', KEYS[5], tostring(token + 1)) or '0')
    if tonumber(ARGV[9]) >= taken then return 'FENCED' end
    late = true
  end
  if ARGV[11] ~= '' and ARGV[10] ~= 'opened' and redis.call('SISMEMBER', KEYS[6], ARGV[11]) == 0 then
    return 'CLOSED'
  end
end
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', tonumber(ARGV[1])) then
  local id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', tonumber(ARGV[2]), '*', 'event', ARGV[3])
  redis.call('PUBLISH', ARGV[4], ARGV[3])
  redis.call('PUBLISH', ARGV[5], ARGV[3])
  if ARGV[6] ~= '' then
    redis.call('HSET', KEYS[3], ARGV[6], ARGV[3])
    redis.call('EXPIRE', KEYS[3], tonumber(ARGV[7]))
    if ARGV[10] == 'opened' then
      redis.call('SADD', KEYS[6], ARGV[11])
    elseif ARGV[10] == 'closed' then
      redis.call('SREM', KEYS[6], ARGV[11])
    end
  end
  if late and ARGV[10] == 'opened' and ARGV[12] ~= '' then
    -- Opened by a previous owner, delivered after the stream's new owner closed the alerts it found open:
    -- nobody else will close it, so its owner_lost close (ARGV[12], id derived from the alert) goes now.
    if redis.call('SET', KEYS[7], '1', 'NX', 'EX', tonumber(ARGV[1])) then
      redis.call('XADD', KEYS[2], 'MAXLEN', '~', tonumber(ARGV[2]), '*', 'event', ARGV[12])
      redis.call('PUBLISH', ARGV[4], ARGV[12])
      redis.call('PUBLISH', ARGV[5], ARGV[12])
      redis.call('HSET', KEYS[3], ARGV[13], ARGV[12])
      redis.call('SREM', KEYS[6], ARGV[11])
    end
    return 'LATE'
  end
  return id
end
return false
"""
# A stream's state hash, written only by the holder of its lease (cluster mode).
FENCED_STATE = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
return 1
"""
