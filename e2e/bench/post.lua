-- wrk script: a small OpenAI chat request as a POST, and one JSON result line at the end.
wrk.method = "POST"
-- BENCH_MODEL picks the slot (run.sh: "bench" is the local slot, "bench-remote" the
-- openai-compatible one).
local model = os.getenv("BENCH_MODEL") or "bench"
wrk.body = '{"model":"' .. model .. '","messages":[{"role":"user","content":"Say ok."}]}'
wrk.headers["Content-Type"] = "application/json"

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"socket_errors":%d,"non2xx":%d,' ..
    '"mean_us":%.1f,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max))
end
