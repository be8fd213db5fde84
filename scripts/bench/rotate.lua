-- wrk: each request takes the next line of the file named by $URLS: a path, then optionally
-- headers separated by tabs (`path<TAB>Name: value<TAB>Name: value`), as a header-signed
-- request was signed. Requests are formatted once, in init (where wrk has set Host).
local lines = {}
for line in io.lines(os.getenv("URLS")) do lines[#lines + 1] = line end
local requests = {}
init = function(args)
  for _, line in ipairs(lines) do
    local fields = {}
    for field in line:gmatch("[^\t]+") do fields[#fields + 1] = field end
    local headers = {}
    for n = 2, #fields do
      local name, value = fields[n]:match("^([^:]+): (.*)$")
      headers[name] = value
    end
    requests[#requests + 1] = wrk.format("GET", fields[1], headers)
  end
end
local i = 0
request = function()
  i = i % #requests + 1
  return requests[i]
end
