-- wrk script: replays pre-built requests from a file, in order, each once (wrapping only if the
-- run outlasts the pool; run.py counts how many requests really moved money).
-- A line of the file: METHOD TARGET [APIKEY]. Use with -t1 (one thread walks the pool).
local requests = {}
local count = 0
local next_index = 0

function init(args)
  for line in io.lines(args[1]) do
    local method, target, key = line:match("^(%S+) (%S+) ?(%S*)$")
    local headers = { ["Accept"] = "application/json" }
    if key ~= "" then headers["X-MBX-APIKEY"] = key end
    if method == "POST" then headers["Content-Length"] = "0" end
    count = count + 1
    requests[count] = wrk.format(method, target, headers, nil)
  end
end

function request()
  next_index = next_index + 1
  if next_index > count then next_index = 1 end
  return requests[next_index]
end

function done(summary, latency, _)
  local e = summary.errors
  io.write(string.format(
    'BENCH-RESULT {"requests":%d,"duration_us":%d,"status_errors":%d,"connect_errors":%d,' ..
    '"read_errors":%d,"write_errors":%d,"timeouts":%d,"p50_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
