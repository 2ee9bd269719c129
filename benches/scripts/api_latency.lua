-- wrk script for benches/scripts/api_latency.sh. SECUMON_BENCH_ENDPOINT chooses `history`
-- (a random host's 24 h of cpu_usage_ratio) or `agents` (the first page of the agents
-- list); SECUMON_BENCH_HOSTS how many hosts there are. Prints one JSON line.
local mode = os.getenv("SECUMON_BENCH_ENDPOINT") or "history"
local hosts = tonumber(os.getenv("SECUMON_BENCH_HOSTS") or "1000")

function init(args)
  math.randomseed(math.floor(os.clock() * 1e6) + tonumber(tostring({}):sub(8), 16))
end

function request()
  if mode == "agents" then
    return wrk.format("GET", "/api/v1/agents?limit=100")
  end
  local host = string.format("host-%04d", math.random(0, hosts - 1))
  return wrk.format("GET", "/api/v1/metrics/hosts/" .. host .. "/history?metric=cpu_usage_ratio&period=24h")
end

function done(summary, latency, requests)
  local seconds = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format(
    '{"endpoint":"%s","requests":%d,"seconds":%.1f,"requests_per_s":%.0f,"p50_ms":%.2f,"p95_ms":%.2f,"p99_ms":%.2f,"socket_errors":%d,"non_2xx":%d}\n',
    mode, summary.requests, seconds, summary.requests / seconds,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000,
    e.connect + e.read + e.write + e.timeout, e.status))
end
