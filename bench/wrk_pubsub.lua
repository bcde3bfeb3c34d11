-- Request generator for bench/pubsub.py, run by wrk with one thread:
--   wrk -t1 ... -s bench/wrk_pubsub.lua URL -- PATH
-- Every request is POST PATH with Content-Type application/json and the body
-- {"seq":<n>,"order":"order-000123","total":59.9}, n = 1, 2, 3... (unique within a run as
-- the bench uses one wrk thread), so the subscriber can tell every event apart and count
-- lost and duplicate deliveries. done() prints one machine-readable line that the Python
-- side parses; status_errors counts responses with a status of 400 or more.

local path
local headers
local n = 0

function init(args)
  path = args[1]
  headers = { Host = wrk.host, ["Content-Type"] = "application/json" }
end

function request()
  n = n + 1
  local body = '{"seq":' .. n .. ',"order":"order-000123","total":59.9}'
  return wrk.format("POST", path, headers, body)
end

function done(summary, latency, _)
  local e = summary.errors
  io.write(string.format(
    'WRK_RESULT {"requests":%d,"duration_us":%d,"p50_us":%.0f,"p99_us":%.0f,"errors":%d,'
      .. '"status_errors":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.status + e.timeout, e.status
  ))
end
