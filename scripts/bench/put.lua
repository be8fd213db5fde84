-- wrk: PUT a 4 KiB body to the next presigned path from the file named by $URLS.
local paths = {}
for line in io.lines(os.getenv("URLS")) do paths[#paths + 1] = line end
local body = string.rep("x", 4096)
local i = 0
request = function()
  i = i % #paths + 1
  return wrk.format("PUT", paths[i], { ["Content-Length"] = tostring(#body) }, body)
end
