-- wrk script of bench/load/run.sh: one route group per wrk process, chosen
-- by LOAD_KIND (bulk, matrix or drilldown), with inputs prepared in
-- LOAD_DIR by prepare.py. Each request takes the next token of its role
-- round-robin, so the per-token rate limit is shared evenly. Any answer
-- outside 2xx, and a bulk answer that refused a line, counts as an error.

local kind = os.getenv("LOAD_KIND")
local dir = os.getenv("LOAD_DIR")
local bulk_lines = tonumber(os.getenv("LOAD_BULK_LINES") or "20")
local run = os.getenv("LOAD_RUN") or "load"

local function read_lines(path)
   local list = {}
   for line in io.lines(path) do
      if #line > 0 then
         list[#list + 1] = line
      end
   end
   return list
end

local tokens = read_lines(dir .. "/tokens-" .. (kind == "bulk" and "engineer" or "analyst") .. ".txt")
local templates, paths
if kind == "bulk" then
   templates = read_lines(dir .. "/bulk-templates.ndjson")
else
   paths = read_lines(dir .. "/" .. kind .. "-paths.txt")
end

local threads = {}

function setup(thread)
   threads[#threads + 1] = thread
   thread:set("id", #threads)
end

function init(args)
   counter = 0
   errors = 0
   codes = ""
   first_error = ""
   math.randomseed(id * 7919)
end

function request()
   counter = counter + 1
   local token = tokens[(counter * #threads + id) % #tokens + 1]
   local headers = { ["Authorization"] = "Bearer " .. token }
   if kind == "bulk" then
      local parts = {}
      for i = 1, bulk_lines do
         local template = templates[(counter * bulk_lines + i) % #templates + 1]
         local uid = string.format("%s-%d-%d-%d", run, id, counter, i)
         parts[i] = (template:gsub("@@uid@@", uid))
      end
      headers["Content-Type"] = "application/x-ndjson"
      return wrk.format("POST", "/api/v1/alerts/bulk", headers, table.concat(parts, "\n") .. "\n")
   end
   return wrk.format("GET", paths[math.random(#paths)], headers)
end

function response(status, headers, body)
   local bad = status < 200 or status > 299
   if not bad and kind == "bulk" and not body:find('"rejected":0', 1, true) then
      bad = true
   end
   if bad then
      errors = errors + 1
      codes = codes .. status .. " "
      if first_error == "" then
         first_error = status .. " " .. body:sub(1, 300)
      end
   end
end

local function json_string(text)
   return '"' .. text:gsub('[%c"\\]', function(c)
      return string.format("\\u%04x", c:byte())
   end) .. '"'
end

function done(summary, latency, requests)
   local errors, codes, first = 0, {}, ""
   for _, thread in ipairs(threads) do
      errors = errors + thread:get("errors")
      for code in thread:get("codes"):gmatch("%d+") do
         codes[code] = (codes[code] or 0) + 1
      end
      if first == "" then
         first = thread:get("first_error")
      end
   end
   local code_list = {}
   for code, n in pairs(codes) do
      code_list[#code_list + 1] = string.format('"%s":%d', code, n)
   end
   local seconds = summary.duration / 1e6
   io.write(string.format(
      '{"route":"%s","connections":%s,"seconds":%.1f,"requests":%d,"per_second":%.1f,'
         .. '"errors":%d,"error_statuses":{%s},"first_error":%s,'
         .. '"socket_errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d},'
         .. '"latency_ms":{"p50":%.1f,"p95":%.1f,"p99":%.1f,"max":%.1f,"mean":%.1f}}\n',
      kind, os.getenv("LOAD_CONNECTIONS") or "null", seconds, summary.requests,
      summary.requests / seconds, errors, table.concat(code_list, ","), json_string(first),
      summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.timeout,
      latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000,
      latency.max / 1000, latency.mean / 1000))
end
