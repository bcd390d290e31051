-- wrk script: every request asks for the next MAC of a list, cycling over all of them, so the
-- server cannot answer from one hot entry.
--   wrk ... -s bench/wrk-cycle.lua URL -- MACS_FILE PATH_FORMAT
-- PATH_FORMAT is a Lua format string with one %s for the MAC, e.g. "/ipxe?mac=%s".
-- At the end it prints one line for bench/boot-server.sh:
--   RESULT requests=N seconds=S rps=R p50_us=A p99_us=B non2xx=C socket_errors=D

local threads = {}
local counter = 0

function setup(thread)
  -- Threads start at different places in the list.
  thread:set("offset", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

local macs = {}
local fmt
local i

function init(args)
  local file = args[1] or error("usage: -- MACS_FILE PATH_FORMAT")
  fmt = args[2] or error("usage: -- MACS_FILE PATH_FORMAT")
  for line in io.lines(file) do
    if line ~= "" then macs[#macs + 1] = line end
  end
  if #macs == 0 then error("no MACs in " .. file) end
  i = math.floor(offset * #macs / 2) % #macs
end

function request()
  i = i % #macs + 1
  return wrk.format("GET", string.format(fmt, macs[i]))
end

function done(summary, latency, requests)
  local seconds = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d seconds=%.2f rps=%.0f p50_us=%d p99_us=%d non2xx=%d socket_errors=%d\n",
    summary.requests, seconds, summary.requests / seconds,
    latency:percentile(50), latency:percentile(99),
    e.status, e.connect + e.read + e.write + e.timeout))
end
