-- wrk script for the http_service test: POST /jobs with a small body, and count the responses
-- by status code across all of wrk's threads. Prints "status <code> <count>" lines at the end.
wrk.method = "POST"
wrk.body = "resize cat.jpg 800x600"
wrk.headers["Content-Type"] = "text/plain"

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  counts = {}
end

function response(status, headers, body)
  counts[status] = (counts[status] or 0) + 1
end

function done(summary, latency, requests)
  local total = {}
  for _, thread in ipairs(threads) do
    for code, n in pairs(thread:get("counts")) do
      total[code] = (total[code] or 0) + n
    end
  end
  for code, n in pairs(total) do
    io.write(string.format("status %d %d\n", code, n))
  end
end
