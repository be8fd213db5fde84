-- wrk: POST an AdmissionReview (the JSON in the file $REVIEW) to /mutate, as the API server does.
local file = assert(io.open(os.getenv("REVIEW"), "rb"))
wrk.method = "POST"
wrk.path = "/mutate"
wrk.body = file:read("*a")
file:close()
wrk.headers["Content-Type"] = "application/json"

-- $PACE_MS: each connection waits on average that long between reviews, exponentially
-- distributed (Poisson arrivals, as pod creations are, rather than back to back or all
-- connections in step): an offered load of connections x 1000 / PACE_MS reviews/s. wrk's
-- latency is measured from each request's send, so it excludes the wait.
local pace = tonumber(os.getenv("PACE_MS") or "")
if pace then
  math.randomseed(os.time())
  function delay()
    return math.floor(-math.log(1 - math.random()) * pace)
  end
end
