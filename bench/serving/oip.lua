-- wrk script: POST one Open Inference Protocol request per call and count non-2xx answers.
--   wrk -t1 -cC -dDs --latency -s oip.lua http://127.0.0.1:P/v2/models/NAME/infer -- BODY_FILE [JSON_HEADER_BYTES]
-- With JSON_HEADER_BYTES the body is Triton's binary tensor extension (a JSON header of that many bytes, then
-- the tensors' bytes), sent as application/octet-stream with Inference-Header-Content-Length.
-- done() prints one line "WRK_JSON {...}" (latencies in microseconds) that run.py parses.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  local file = assert(io.open(args[1], "rb"), "usage: -- BODY_FILE")
  local body = file:read("*a")
  file:close()
  wrk.method = "POST"
  wrk.body = body
  if args[2] then
    wrk.headers["Content-Type"] = "application/octet-stream"
    wrk.headers["Inference-Header-Content-Length"] = args[2]
  else
    wrk.headers["Content-Type"] = "application/json"
  end
  non2xx = 0
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
  end
end

function done(summary, latency, requests)
  local non2xx_total = 0
  for _, thread in ipairs(threads) do
    non2xx_total = non2xx_total + thread:get("non2xx")
  end
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"non2xx":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"min":%d,"mean":%.1f,"stdev":%.1f,"max":%d,"p50":%d,"p90":%d,"p99":%d,"p999":%d}}\n',
    summary.requests, summary.duration, summary.bytes, non2xx_total,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency.stdev, latency.max,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9)))
end
