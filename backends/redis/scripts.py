"""The Lua scripts of the Redis backend and store, and how they are run.

Every step that reads and then writes is one script, so Redis runs it atomically: no
other client's command runs between its read and its write. Scripts are loaded once
(``SCRIPT LOAD`` when a connection is made) and run with ``EVALSHA``; a server that
answers ``NOSCRIPT`` (it restarted, or ``SCRIPT FLUSH`` ran) gets the script again and
the call is repeated once.

The queue scripts share three Lua helpers: ``head_of`` finds the first live contender
(dropping contenders whose hash has expired: their backend stopped refreshing it),
``announce`` wakes a new first contender (a message on its backend's wake channel) and
tells election observers, and ``settle`` does both when dead contenders were dropped.
Every queue script is idempotent (safe to send again after a lost reply): the caller
picks the contender's id, and enqueueing an id already queued returns its place.

Tokens: a queue's token counter is INCRed once per contender, in arrival order, and the
queue is served in token order, so a later grant always has a larger token. Scores are
doubles; a token above 2**53 is refused rather than rounded.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ENQUEUE", "FENCED", "KEEPALIVE", "LEAVE", "LOOK", "MEMBERS", "PROCLAIM", "SCRIPTS", "Script"]

_log = logging.getLogger(__name__)

#: Largest token a queue issues: scores are doubles, exact up to 2**53.
MAX_QUEUE_TOKEN = 2**53


@dataclass(frozen=True)
class Script:
    """A Lua script and its SHA-1 (what ``EVALSHA`` names it by)."""

    name: str
    source: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.source.encode()).hexdigest())

    def args(self, keys: Sequence[str], argv: Sequence[Any]) -> tuple[Any, ...]:
        """``EVALSHA``'s arguments after the command name."""
        return (self.sha, len(keys), *keys, *argv)


_HELPERS = """
local function head_of(queue, base)
  local dropped = false
  while true do
    local head = redis.call('ZRANGE', queue, 0, 0)[1]
    if not head then return nil, nil, dropped end
    local sid = redis.call('HGET', base .. '/e/' .. head, 'sid')
    if sid then return head, sid, dropped end
    redis.call('ZREM', queue, head)
    dropped = true
  end
end

local function announce(head, sid, wake, changed)
  if head then redis.call('PUBLISH', wake .. sid, head) end
  if changed ~= '' then redis.call('PUBLISH', changed, '') end
end

local function settle(queue, base, wake, changed)
  local head, sid, dropped = head_of(queue, base)
  if dropped then announce(head, sid, wake, changed) end
  return head
end

local function pttl_of(base, head)
  return redis.call('PTTL', base .. '/e/' .. head)
end
"""

#: KEYS: queue, counter, entry. ARGV: base, id, sid, who, value, px, exclusive (0/1),
#: floor, wake prefix, changed channel ('' for locks).
#: Returns {1, token, first, head's pttl} when queued, {0} when ``exclusive`` and
#: someone holds or waits, {-1, token} when INCR gave a token <= floor (the counter is
#: raised to floor, nothing queued), {-2, token} past MAX_QUEUE_TOKEN.
ENQUEUE = Script("enqueue", _HELPERS + f"""
local queue, counter, entry = KEYS[1], KEYS[2], KEYS[3]
local base, id, sid = ARGV[1], ARGV[2], ARGV[3]
local head = settle(queue, base, ARGV[9], ARGV[10])
local queued = redis.call('ZSCORE', queue, id)
if queued and redis.call('HGET', entry, 'sid') == sid then
  if head == id then return {{1, tonumber(queued), 1, 0}} end
  return {{1, tonumber(queued), 0, pttl_of(base, head)}}
end
if ARGV[7] == '1' and head then return {{0}} end
local token = redis.call('INCR', counter)
if token <= tonumber(ARGV[8]) then
  redis.call('SET', counter, ARGV[8])
  return {{-1, token}}
end
if token > {MAX_QUEUE_TOKEN} then return {{-2, token}} end
redis.call('HSET', entry, 'sid', sid, 'who', ARGV[4], 'val', ARGV[5])
redis.call('PEXPIRE', entry, ARGV[6])
redis.call('ZADD', queue, token, id)
if not head then
  if ARGV[10] ~= '' then redis.call('PUBLISH', ARGV[10], '') end
  return {{1, token, 1, 0}}
end
return {{1, token, 0, pttl_of(base, head)}}
""")

#: KEYS: queue, entry. ARGV: base, id, sid, wake prefix, changed channel.
#: Returns {1, first, head's pttl}, or {0} when the entry is gone (disposed of).
LOOK = Script("look", _HELPERS + """
local queue, entry = KEYS[1], KEYS[2]
local base, id, sid = ARGV[1], ARGV[2], ARGV[3]
local head = settle(queue, base, ARGV[4], ARGV[5])
local mine = redis.call('HGET', entry, 'sid') == sid
if not mine or not redis.call('ZSCORE', queue, id) then
  if mine then redis.call('DEL', entry) end
  redis.call('ZREM', queue, id)
  return {0}
end
if head == id then return {1, 1, 0} end
return {1, 0, pttl_of(base, head)}
""")

#: Compare-and-delete. KEYS: queue, entry. ARGV: base, id, sid, wake prefix, changed.
#: Returns 1 if the entry was the live first contender (the holder), else 0.
LEAVE = Script("leave", _HELPERS + """
local queue, entry = KEYS[1], KEYS[2]
local base, id, sid = ARGV[1], ARGV[2], ARGV[3]
local head = settle(queue, base, ARGV[4], ARGV[5])
local held = 0
if redis.call('HGET', entry, 'sid') == sid then
  if head == id then held = 1 end
  redis.call('DEL', entry)
end
redis.call('ZREM', queue, id)
if held == 1 then
  local next_head, next_sid = head_of(queue, base)
  announce(next_head, next_sid, ARGV[4], ARGV[5])
end
return held
""")

#: Compare-and-pexpire of many entries at once. KEYS: entry1, queue1, entry2, queue2, ...
#: ARGV: sid, px, then per entry its id and 1 if it holds (must be first), else 0.
#: Returns one 1 (refreshed) or 0 (gone, or no longer first: disposed of) per entry.
KEEPALIVE = Script("keepalive", """
local sid, px = ARGV[1], ARGV[2]
local alive = {}
for i = 1, #KEYS / 2 do
  local entry, queue = KEYS[2 * i - 1], KEYS[2 * i]
  local id, holds = ARGV[2 * i + 1], ARGV[2 * i + 2]
  local ok = redis.call('HGET', entry, 'sid') == sid and redis.call('ZSCORE', queue, id)
  if ok and holds == '1' then
    local first = redis.call('ZRANGE', queue, 0, 0)[1]
    ok = first == id
  end
  if ok then
    redis.call('PEXPIRE', entry, px)
    alive[i] = 1
  else
    if redis.call('HGET', entry, 'sid') == sid then redis.call('DEL', entry) end
    alive[i] = 0
  end
end
return alive
""")

#: Read-only. KEYS: queue. ARGV: base, '1' for the first live contender only.
#: Returns who, token (a decimal string) for each live contender in order; with '1',
#: who, token, value and pttl (ms until its hash expires) of the first one.
MEMBERS = Script("members", """
local out = {}
local members = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
for i = 1, #members, 2 do
  local fields = redis.call('HMGET', ARGV[1] .. '/e/' .. members[i], 'who', 'val')
  if fields[1] then
    out[#out + 1] = fields[1]
    out[#out + 1] = members[i + 1]
    if ARGV[2] == '1' then
      out[#out + 1] = fields[2] or ''
      out[#out + 1] = redis.call('PTTL', ARGV[1] .. '/e/' .. members[i])
      return out
    end
  end
end
return out
""")

#: KEYS: queue, entry. ARGV: base, id, sid, value, wake prefix, changed channel.
#: Returns 1 when the entry leads and its value was replaced, else 0.
PROCLAIM = Script("proclaim", _HELPERS + """
local queue, entry = KEYS[1], KEYS[2]
local head = settle(queue, ARGV[1], ARGV[5], ARGV[6])
if head ~= ARGV[2] or redis.call('HGET', entry, 'sid') ~= ARGV[3] then return 0 end
redis.call('HSET', entry, 'val', ARGV[4])
redis.call('PUBLISH', ARGV[6], '')
return 1
""")

#: The gate's check-and-set. KEYS: token key, value key. ARGV: token (20 decimal
#: digits), strict ('1'/'0'), 'w' (write ARGV[4]) or 'r' (read).
#: Returns {1, highest before or nil[, value]} when admitted, {0, highest} when refused.
#: Tokens are compared as two 10-digit halves: exact for any 64-bit token, whatever
#: the server's locale (Lua's string order follows strcoll).
FENCED = Script("fenced", """
local function split(t)
  if #t ~= 20 or not string.match(t, '^%d+$') then
    return redis.error_reply('fencing-coord: ' .. KEYS[1] .. ' does not hold a token')
  end
  return {tonumber(string.sub(t, 1, 10)), tonumber(string.sub(t, 11, 20))}
end
local function compare(a, b)
  if a[1] ~= b[1] then return a[1] < b[1] and -1 or 1 end
  if a[2] ~= b[2] then return a[2] < b[2] and -1 or 1 end
  return 0
end
local highest = redis.call('GET', KEYS[1])
local mine = split(ARGV[1])
if highest then
  local top = split(highest)
  if top.err then return top end
  local order = compare(mine, top)
  if order < 0 or (order == 0 and ARGV[2] == '1') then return {0, highest} end
  if order > 0 then redis.call('SET', KEYS[1], ARGV[1]) end
else
  redis.call('SET', KEYS[1], ARGV[1])
end
if ARGV[3] == 'w' then
  redis.call('SET', KEYS[2], ARGV[4])
  return {1, highest}
end
return {1, highest, redis.call('GET', KEYS[2])}
""")

#: Every script, loaded by each new connection.
SCRIPTS = (ENQUEUE, LOOK, LEAVE, KEEPALIVE, MEMBERS, PROCLAIM, FENCED)
