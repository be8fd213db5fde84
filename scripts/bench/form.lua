-- wrk: POST the form body in the file named by $BODY (application/x-www-form-urlencoded), the
-- same bytes on every request.
local f = assert(io.open(os.getenv("BODY"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
