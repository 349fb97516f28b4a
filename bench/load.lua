-- wrk script of bench/run.py: POSTs one form body to one path, with a bearer token.
-- Environment: BENCH_PATH, BENCH_BODY_FILE, and either BENCH_TOKEN (one token for every
-- request) or BENCH_TOKENS_FILE (one token per line, a different one for each request, in turn).
-- done() prints one machine-readable line starting with "WRKJSON".

local function slurp(name)
  local f = assert(io.open(name, "rb"))
  local data = f:read("*a")
  f:close()
  return data
end

wrk.method = "POST"
wrk.path = os.getenv("BENCH_PATH")
wrk.body = slurp(os.getenv("BENCH_BODY_FILE"))
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
local token = os.getenv("BENCH_TOKEN") or ""
if token ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. token
end

local tokens_file = os.getenv("BENCH_TOKENS_FILE") or ""
if tokens_file ~= "" then
  local tokens = {}
  for line in io.lines(tokens_file) do
    if line ~= "" then
      tokens[#tokens + 1] = line
    end
  end
  local next_token = 0
  local base = wrk.headers
  function request()
    next_token = next_token % #tokens + 1
    local headers = {}
    for k, v in pairs(base) do
      headers[k] = v
    end
    headers["Authorization"] = "Bearer " .. tokens[next_token]
    return wrk.format(nil, nil, headers, nil)
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,' ..
    '"connect":%d,"read":%d,"write":%d,"timeout":%d,"status":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect, e.read, e.write, e.timeout, e.status))
end
