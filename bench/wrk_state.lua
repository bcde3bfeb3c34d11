-- Request generator for bench/sidecar_state.py, run by wrk:
--   wrk ... -s bench/wrk_state.lua URL -- OP BASE_PATH NKEYS VALUE_JSON
-- OP "get" sends GET BASE_PATH/k<i>; OP "save" sends POST BASE_PATH with the body
-- [{"key":"k<i>","value":VALUE_JSON}]; i is uniform in [0, NKEYS). Requests are built once
-- in init() so wrk only does a table lookup per request. done() prints one machine-readable
-- line that the Python side parses.

local requests = {}

function init(args)
  local op, base, nkeys, value = args[1], args[2], tonumber(args[3]), args[4]
  for i = 1, nkeys do
    local key = "k" .. (i - 1)
    if op == "get" then
      requests[i] = wrk.format("GET", base .. "/" .. key, { Host = wrk.host })
    else
      local body = '[{"key":"' .. key .. '","value":' .. value .. "}]"
      local headers = { Host = wrk.host, ["Content-Type"] = "application/json" }
      requests[i] = wrk.format("POST", base, headers, body)
    end
  end
  math.randomseed(os.time())
end

function request()
  return requests[math.random(#requests)]
end

function done(summary, latency, _)
  local e = summary.errors
  io.write(string.format(
    'WRK_RESULT {"requests":%d,"duration_us":%d,"p50_us":%.0f,"p99_us":%.0f,"errors":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.status + e.timeout
  ))
end
